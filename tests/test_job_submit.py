"""`ray job submit` of the crop-scale sweep to a local head: the cluster path works."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.tracking import TAG_PARENT
from tests.conftest import REPO_ROOT, TRAIN_POLL_S, TRAIN_POLL_VAR
from tests.tiny import tiny_overrides

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head():
    """A separate head on loopback (`ray start --head --block`), stopped by its process group."""
    temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths are limited
    dashboard = free_port()
    # A HOME without ~/.ray/auth_token: with that file `ray start` turns token auth on, the
    # token-less `ray job list` below is refused, and the fixture waited out its 120 s.
    # (tests/test_cluster_head.py covers the token head.)
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS} | {
        "HOME": tempfile.mkdtemp(prefix="home", dir="/tmp"), TRAIN_POLL_VAR: TRAIN_POLL_S}
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--num-cpus=2", f"--port={free_port()}",
         "--node-ip-address=127.0.0.1", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
         f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:  # a head that never came up is stopped too (it kept its raylet and dashboard)
        deadline = time.time() + 120
        while time.time() < deadline:
            probe = subprocess.run([RAY, "job", "list", "--address", address], env=env,
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
            if head.poll() is not None:
                pytest.fail(f"ray head exited: {head.stdout.read()}")
            time.sleep(2)
        else:
            pytest.fail("ray head did not come up in 120 s")
    except BaseException:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGKILL)
        raise
    yield address, env
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)


def test_sweep_runs_as_a_ray_job(ray_head, data_cache, tmp_path):
    address, env = ray_head
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sets = [arg for item in tiny_overrides(data_cache) for arg in ("--set", item)]
    submit = subprocess.run(
        [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO_ROOT), "--",
         sys.executable, "sweeps/crop_scale.py", "--crop-scale-mins", "0.5", "--name", "job",
         "--storage-path", str(tmp_path / "results"), "--tracking-uri", uri, *sets],
        env=env, capture_output=True, text=True, timeout=600,
    )
    out = submit.stdout + submit.stderr
    assert submit.returncode == 0, out[-4000:]
    assert "succeeded" in out and "Sweep job: 1 trials" in out
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("demystify-ssl")
    children = [r for r in client.search_runs([exp.experiment_id]) if TAG_PARENT in r.data.tags]
    assert len(children) == 1 and children[0].info.status == "FINISHED"
    assert "ris/viewpoint/top25" in children[0].data.metrics
    # Artifacts beside the store, not in the job's temporary working directory.
    artifacts = (tmp_path / "mlartifacts").as_uri()
    assert exp.artifact_location == artifacts
    model = client.get_logged_model(children[0].data.tags["dssl.model_uri"].removeprefix("models:/"))
    assert model.artifact_location.startswith(artifacts)
    assert (tmp_path / "mlartifacts").is_dir()
