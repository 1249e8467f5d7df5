"""One way to start Ray (datasets.ray_connection.init_ray), for the sweeps and the video
pipeline alike: the same dashboard, the same workers' PYTHONPATH, the same join rule."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import ray

import datasets.ray_connection
import datasets.video.pipeline
import datasets.video.regions
from datasets.ray_connection import REPO_ROOT, TRAIN_POLL_VAR, init_ray


@pytest.fixture
def ray_init_calls(monkeypatch):
    """`ray.init`'s calls, Ray itself never started (no Ray yet in this process)."""
    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: bool(calls))
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    return calls


def test_a_local_ray_has_the_dashboard_and_this_repository_first_on_the_workers_path(ray_init_calls, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.delenv(TRAIN_POLL_VAR, raising=False)
    assert init_ray(num_cpus=2) == {"CPU": 2.0}
    assert init_ray(num_cpus=8) == {"CPU": 2.0}  # once per process: the second call joins the first
    [call] = ray_init_calls
    # The dashboard serves the state API that Ray Train's placement-group cleaner polls.
    assert call["include_dashboard"] is True and call["dashboard_host"] == "127.0.0.1"
    assert call["num_cpus"] == 2
    assert call["runtime_env"] == {"env_vars": {"PYTHONPATH": f"{REPO_ROOT}:/elsewhere", TRAIN_POLL_VAR: "0.5"}}


def test_with_a_cluster_address_ray_joins_it_and_keeps_the_jobs_environment(ray_init_calls, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    init_ray(num_cpus=2, quiet=True)
    [call] = ray_init_calls
    assert call["address"] == "ray://head:10001"
    assert "runtime_env" not in call and "num_cpus" not in call and call["log_to_driver"] is False


def test_ray_init_is_called_in_one_place_only():
    """The sweeps, the scorer, the video pipeline and its region stages all start Ray through
    init_ray (they once disagreed on the dashboard)."""
    callers = []
    for room in ("datasets", "trainables", "orchestrator", "sweeps"):
        for path in sorted((REPO_ROOT / room).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "init"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "ray"):
                    callers.append(str(path.relative_to(REPO_ROOT)))
    assert sorted(set(callers)) == [str(Path(datasets.ray_connection.__file__).relative_to(REPO_ROOT))]

    assert datasets.video.pipeline.init_ray is init_ray and datasets.video.regions.init_ray is init_ray
