"""Autoscaling, faked on one machine: a sweep scales a CPU group and a GPU group up from 0,
finishes, and both groups go back to 0 after the idle timeout.

Ray's fake multi-node provider (the one `ray.cluster_utils.AutoscalingCluster` drives)
starts "nodes" as extra raylets on this machine. The groups are those of
orchestrator/clusters/: the head and CPU nodes carry `cpu_node`, the GPU group a custom
resource `fake_gpu` standing in for the GPU (`--set worker_resources=fake_gpu=1` makes the
Train workers ask for it, as `use_gpu` asks for a GPU). The head has no CPU, so the Train
worker must scale the GPU group and the evaluation's Ray Data CPU actors the CPU group.

Opt-in (`DSSL_AUTOSCALING_TEST=1`): it starts several raylets and takes minutes on two
cores. It starts its head itself, on its own port and temp folder, rather than with
`AutoscalingCluster.start()`, which runs `ray stop --force` and would end every other Ray
instance on the machine (the test session's included).
"""
from __future__ import annotations

import copy
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from ray.autoscaler._private.monitor import BASE_READONLY_CONFIG

from tests.conftest import REPO_ROOT
from tests.test_cluster_head import AUTH_VARS, RAY, free_port, stop, wait_for
from tests.tiny import tiny_overrides

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("DSSL_AUTOSCALING_TEST") != "1",
                       reason="fake autoscaling cluster: opt in with DSSL_AUTOSCALING_TEST=1 (minutes)"),
]
IDLE_TIMEOUT_MINUTES = 0.25
GROUPS = {
    "cpu_workers": {"resources": {"CPU": 1, "cpu_node": 1000}, "node_config": {},
                    "min_workers": 0, "max_workers": 1},
    "gpu_workers": {"resources": {"CPU": 1, "fake_gpu": 1}, "node_config": {},
                    "min_workers": 0, "max_workers": 1},
}


def active_groups(status: str) -> dict[str, int]:
    """`ray status`'s "Active:" block as {node type: count}."""
    block = status.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return {name: int(count) for count, name in re.findall(r"^\s*(\d+)\s+(\S+)\s*$", block, re.M)}


@pytest.fixture
def fake_cluster(tmp_path):
    port = free_port()
    ip = subprocess.run([sys.executable, "-c", "import ray._private.services as s; print(s.get_node_ip_address())"],
                        capture_output=True, text=True, check=True).stdout.strip()
    # AutoscalingCluster's config (its template is not in Ray's wheel): Ray's own read-only
    # base with the fake provider and our groups.
    config = copy.deepcopy(BASE_READONLY_CONFIG) | {
        "max_workers": 2, "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        "available_node_types": GROUPS | {"ray.head.default": {
            "resources": {"CPU": 0, "cpu_node": 1000}, "node_config": {}, "max_workers": 0}}}
    config["provider"] = {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                          "disable_launch_config_check": True, "gcs_address": f"{ip}:{port}"}
    config_file = tmp_path / "autoscaling.json"
    config_file.write_text(json.dumps(config))
    # Token auth, as on the real clusters; the fake nodes inherit it from the head's monitor.
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS} | {
        "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_FAKE_CLUSTER": "1", "PYTHONPATH": str(REPO_ROOT),
        "RAY_USAGE_STATS_ENABLED": "0", "HOME": str(tmp_path), "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--num-cpus=0",
         "--resources=" + json.dumps({"cpu_node": 1000}), f"--autoscaling-config={config_file}",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={free_port()}",
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
         f"--ray-client-server-port={free_port()}",
         f"--temp-dir={tempfile.mkdtemp(prefix='ra', dir='/tmp')}", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    address = f"{ip}:{port}"

    def status() -> str:
        done = subprocess.run([RAY, "status", "--address", address], env=env, capture_output=True, text=True,
                              timeout=60)
        return done.stdout if done.returncode == 0 else ""

    try:
        wait_for(lambda: "Active:" in status(), 120, "fake autoscaling head", head)
        yield address, env, status
    finally:
        stop(head, signal.SIGKILL)  # the head's process group: its monitor and the fake nodes it started


def test_a_sweep_scales_both_groups_up_then_down(fake_cluster, data_cache, tmp_path):
    address, env, status = fake_cluster
    seen: dict[str, int] = {}
    watching = threading.Event()

    def watch():
        while not watching.is_set():
            for group, count in active_groups(status()).items():
                seen[group] = max(seen.get(group, 0), count)
            time.sleep(1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sets = [a for item in tiny_overrides(data_cache) for a in ("--set", item)]
    sweep = subprocess.run(
        [sys.executable, "sweeps/crop_scale.py", "--crop-scale-mins", "0.5", "--name", "autoscale",
         "--storage-path", str(tmp_path / "results"), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
         "--no-log-models", *sets, "--set", "invariances=viewpoint", "--set", "worker_resources=fake_gpu=1",
         # New weights each run: cached features would spare the evaluation its CPU actors.
         "--set", f"seed={secrets.randbelow(10**6) + 1}"],
        cwd=REPO_ROOT, env=env | {"RAY_ADDRESS": address}, capture_output=True, text=True, timeout=900)
    watching.set()
    watcher.join()
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    assert "Sweep autoscale: 1 trials" in sweep.stdout
    assert seen.get("gpu_workers") == 1, seen  # the Train worker's fake GPU
    assert seen.get("cpu_workers") == 1, seen  # the evaluation's Ray Data CPU actors
    # Idle nodes go back after the timeout.
    wait_for(lambda: not {"cpu_workers", "gpu_workers"} & set(active_groups(status())),
             IDLE_TIMEOUT_MINUTES * 60 + 120, "scale-down to the head alone")
