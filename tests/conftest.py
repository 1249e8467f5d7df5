"""Shared fixtures: one local Ray instance per test session, small synthetic data, and one
tiny crop-scale sweep that several test files read (a sweep costs tens of seconds)."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# `make test` runs the suite as two pytest processes side by side (tests/parallel.py): the
# tests on the session's Ray instance (marked `ray_session` here) in one, the rest in the
# other, so a core idle while Ray starts processes runs Ray-free tests. Still one Ray
# instance for the Ray tests (two on 2 CPUs compete for cores and deadlock).
RAY_MARK = "ray_session"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "ray_session" in item.fixturenames:
            item.add_marker(RAY_MARK)
    # The `cpu_bound` tests (minutes of training on both cores) last: by then the other
    # process has finished; run beside it, their torch threads and its tests share two cores
    # and the MoCo learning test took 355 s instead of 78 (CI 2026-12-07 05:12).
    items.sort(key=lambda item: item.get_closest_marker("cpu_bound") is not None)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole session (starting Ray costs seconds).

    Tests that need Ray take this fixture; Ray is shut down at the end of the session.
    """
    import ray

    from datasets.ray_connection import init_ray

    # (init_ray has Train's controller poll every 0.5 s: tiny runs wait on its polls.)
    init_ray(num_cpus=2, quiet=True)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """A cache folder for generated data shared by the whole session."""
    path = os.environ.get("DSSL_TEST_CACHE_DIR")
    return Path(path) if path else tmp_path_factory.mktemp("data-cache")


@pytest.fixture
def one_torch_thread():
    """Tiny models: one torch thread is faster than two fighting other jobs for a shared core."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The shared crop-scale sweep: two trials, the three ALOI invariances (MLflow's compare page
# lists a limited number of metrics, and tests/test_mlflow_ui.py reads them off the page).
CROP_SWEEP_FACTORS = ("viewpoint", "illumination_direction", "illumination_color")
CROP_SWEEP_RIS_KEYS = [f"ris/{f}/top{k}" for f in CROP_SWEEP_FACTORS for k in (10, 25)]
CROP_SWEEP_MINS = [0.2, 0.5]


def sweep_children(client, parent_run_id):
    """The parent's child runs, by run name (the knob's value: the grid's order)."""
    from orchestrator.tracking.keys import TAG_PARENT

    parent = client.get_run(parent_run_id)
    return sorted((r for r in client.search_runs([parent.info.experiment_id])
                   if r.data.tags.get(TAG_PARENT) == parent_run_id), key=lambda r: r.info.run_name)


@pytest.fixture(scope="session")
def crop_sweep(ray_session, data_cache, tmp_path_factory):
    """ONE tiny two-trial crop-scale sweep for the session, whose trials' final metrics each
    fail once to reach MLflow (a server's hiccup, retried). tests/test_sweep.py reads the
    trials, tests/test_mlflow_ui.py the finished store (UI, tables, models). (A trial failing
    after a checkpoint and `--resume` continuing it: tests/test_nodes_share_no_disk.py.)
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from ray import tune

    from orchestrator.config import SweepSettings
    from orchestrator.sweep import run_sweep
    from orchestrator.tracking.callback import MLflowTrialCallback
    from tests.tiny import tiny_config

    root = tmp_path_factory.mktemp("crop-sweep")
    uri = f"sqlite:///{root}/mlflow.db"
    base = tiny_config(data_cache).override({"invariances": ",".join(CROP_SWEEP_FACTORS)})
    grid = {"method": {"crop_scale_min": tune.grid_search(CROP_SWEEP_MINS), "crop_scale_max": 1.0}}
    settings = SweepSettings(name="crop", storage_path=str(root / "results"), tracking_uri=uri, experiment="crop")
    client = MlflowClient(uri)

    hiccups: list[str] = []
    real_log_batch = MlflowClient.log_batch

    def flaky_log_batch(self, run_id, metrics=(), *args, **kwargs):
        if run_id not in hiccups and any(m.key in CROP_SWEEP_RIS_KEYS and m.step == 1 for m in metrics):
            hiccups.append(run_id)
            raise MlflowException("injected: 503 Service Unavailable")
        return real_log_batch(self, run_id, metrics, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MlflowClient, "log_batch", flaky_log_batch)
        patch.setattr(MLflowTrialCallback, "RETRY_DELAYS", (0.0,))
        outcome = run_sweep(base, grid, settings)
    return SimpleNamespace(outcome=outcome, uri=uri, root=root, client=client, hiccups=hiccups,
                           children=sweep_children(client, outcome.parent_run_id))

