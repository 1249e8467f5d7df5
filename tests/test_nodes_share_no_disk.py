"""The README's cluster path on two Ray nodes that share no disk (tests/nodes.py): a head
(no CPUs: it runs only control, the sweep's driver and the MLflow server) and a worker
node (2 CPUs: every Train worker and evaluation task), each with its own network and its
own private /tmp. The sweep's storage and data cache are `s3://` on moto's S3 server on
the bridge, which the nodes reach as a MinIO user's nodes would (AWS_ENDPOINT_URL, set on
the driver only: the nodes were started without it, and the sweep hands it on,
datasets.storage); its MLflow server runs on the head and keeps its artifacts in the bucket.

Issue 23's object-storage test and its nodes-that-share-no-disk test in one sweep: one
trial fails after epoch 0 (its checkpoint in the bucket) and `--resume` continues it from
the bucket on the other node's side of the wall; the synthetic data the driver generated
on the head reaches the worker only through the bucket; the features the evaluation task
cached are in the bucket. The driver runs inside the head (`python -m` this module) and
prints what Ray's state API says about where the work ran.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

RAY = str(Path(sys.executable).with_name("ray"))
RAY_PORT = 6379  # each node has a network of its own: Ray's default ports are free there
MLFLOW_URL = "http://127.0.0.1:5000"  # on the head's own loopback (the server's default bind)
NODE_HOME, NODE_CACHE = "/tmp/home", "/tmp/dssl-cache"  # on each node's private tmpfs
FACTS = "TWO-NODE-FACTS "  # the driver's last line: what it saw, as JSON
# A guard against a hang, not a speed check: 122 s alone on one 2-core machine, and over
# 500 s on a slower one beside the Ray tests (2026-12-07).
DRIVER_LIMIT_S = 1000
# The environment nodes and driver must not inherit from the test's: a cluster, a store, a cache.
NOT_INHERITED = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI", "DSSL_CACHE_DIR",
                 "DSSL_TEST_CACHE_DIR")


def node_env() -> dict[str, str]:
    """What every node starts with: the code (the image's part), a HOME on its private tmpfs."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED and not k.startswith("AWS_")}
    return env | {"HOME": NODE_HOME, "PYTHONPATH": str(REPO_ROOT), "RAY_USAGE_STATS_ENABLED": "0",
                  "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "PYTHONUNBUFFERED": "1"}


def in_node(node, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(node.command(*argv), capture_output=True, text=True, timeout=60)


def test_missing_namespaces_skip_the_test_or_fail_it_where_required(monkeypatch):
    from tests.nodes import REQUIRE_VAR, unavailable

    monkeypatch.delenv(REQUIRE_VAR, raising=False)
    with pytest.raises(pytest.skip.Exception, match="need root"):
        unavailable("network and mount namespaces need root")
    monkeypatch.setenv(REQUIRE_VAR, "1")
    with pytest.raises(pytest.fail.Exception, match=f"need root .{REQUIRE_VAR} is set"):
        unavailable("network and mount namespaces need root")


@pytest.mark.slow
@pytest.mark.timeout(DRIVER_LIMIT_S + 500)
def test_a_sweep_on_two_nodes_that_share_no_disk_runs_through_the_bucket(tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking.keys import TAG_CHECKPOINT
    from tests.conftest import sweep_children
    from tests.nodes import (
        MOUNTED,
        object_keys,
        private_network,
        s3_server,
        start_node,
        start_service,
        wait_for_log,
    )

    database = tmp_path / "mlflow.db"
    with private_network() as net, s3_server(net.host_ip) as store:
        head, worker = net.nodes
        env = node_env()
        ray_start = [RAY, "start", "--block", "--object-store-memory=200000000", "--disable-usage-stats"]
        start_node(head, [*ray_start, "--head", "--num-cpus=0", f"--port={RAY_PORT}", f"--node-ip-address={head.ip}",
                          "--include-dashboard=true", "--dashboard-host=127.0.0.1"], env, tmp_path / "head.log")
        # The worker joins as soon as the head's GCS answers (`ray start --address` waits for it).
        start_node(worker, [*ray_start, f"--address={head.ip}:{RAY_PORT}", "--num-cpus=2",
                            f"--node-ip-address={worker.ip}"], env, tmp_path / "worker.log")
        # The project's server, on the head's network; its runs in the test's SQLite file, its
        # artifacts proxied to the bucket.
        start_service(head, [sys.executable, "-m", "orchestrator.mlflow_server", "--port", MLFLOW_URL.rsplit(":", 1)[1],
                             "--backend-store-uri", f"sqlite:///{database}", "--workers", "1",
                             "--artifacts-destination", f"s3://{store.bucket}/mlartifacts"],
                      env | store.env, tmp_path / "mlflow.log", cwd=REPO_ROOT)
        # The driver, inside the head, imports while the nodes start; it waits for a line on stdin.
        wait_for_log(head, tmp_path / "head.log", MOUNTED, 60)
        driver = subprocess.Popen(
            head.command(sys.executable, "-m", "tests.test_nodes_share_no_disk", store.bucket, MLFLOW_URL),
            env=env | store.env | {"RAY_ADDRESS": f"{head.ip}:{RAY_PORT}", "DSSL_CACHE_DIR": NODE_CACHE},
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        head.services.append(driver)
        wait_for_log(head, tmp_path / "head.log", "Ray runtime started", 180)
        wait_for_log(worker, tmp_path / "worker.log", "Ray runtime started", 180)

        # The wall itself: a file the worker node writes in its /tmp, the head cannot see.
        assert in_node(worker, "sh", "-c", "echo worker > /tmp/only-here && cat /tmp/only-here").stdout == "worker\n"
        assert in_node(head, "test", "-e", "/tmp/only-here").returncode == 1
        assert not Path("/tmp/only-here").exists()

        try:
            output, _ = driver.communicate("both nodes are up\n", timeout=DRIVER_LIMIT_S)
        except subprocess.TimeoutExpired:
            driver.kill()
            output, _ = driver.communicate()
            pytest.fail(f"the driver took over {DRIVER_LIMIT_S} s:\n{output[-5000:]}")
        assert driver.returncode == 0 and FACTS in output, output[-5000:]
        facts = json.loads(output.rsplit(FACTS, 1)[1].splitlines()[0])
        worker_cache = in_node(worker, "find", NODE_CACHE, "-name", ".complete").stdout.split()
        checkpoints = {key.split("/checkpoint_")[0] for key in object_keys(store, "results/s3-train/")
                       if "/checkpoint_" in key}
        tuner_state = [key for key in object_keys(store, "results/s3/") if key.endswith("tuner.pkl")]
        cached = object_keys(store, "data-cache/")
        artifacts = object_keys(store, "mlartifacts/")

    # The cluster: the head (the driver's node, no CPUs) and the worker node, both alive.
    nodes = {n["node_id"]: n for n in facts["nodes"]}
    assert sorted(n["ip"] for n in nodes.values()) == sorted([head.ip, worker.ip])
    assert nodes[facts["driver_node"]]["ip"] == head.ip and nodes[facts["driver_node"]]["cpus"] == 0
    worker_node = next(i for i, n in nodes.items() if n["ip"] == worker.ip)
    # Every Train worker (both runs: the failed one and its resume) and every evaluation ran there.
    assert len(facts["train_worker_nodes"]) == 2 and set(facts["train_worker_nodes"]) == {worker_node}
    assert facts["evaluation_nodes"] and set(facts["evaluation_nodes"]) == {worker_node}

    failed, resumed = facts["failed"], facts["resumed"]
    assert failed["errors"] and "injected failure after epoch 0" in " ".join(failed["errors"])
    # After the failure, before the resume: the child run FAILED with the error as a tag, and
    # epoch 0 (finished and checkpointed before the failure) logged.
    (failed_child,) = failed["children"]
    assert failed_child["status"] == "FAILED" and failed_child["loss_steps"] == [0]
    assert "injected failure after epoch 0" in failed_child["error"]
    assert "inject_failure_at_epoch" not in failed_child["params"]  # a test hook, not a param
    assert len(checkpoints) == 1, "the trial's checkpoints are in the bucket"
    assert tuner_state, "Tune's state is in the bucket"
    assert resumed["errors"] == [] and resumed["parent_run_id"] == failed["parent_run_id"]
    (row,) = resumed["rows"]
    assert 0.0 < row["ris/viewpoint/top10"] <= 100.0 and "probe/linear_top1" in row

    client = MlflowClient(f"sqlite:///{database}")
    parent = client.get_run(resumed["parent_run_id"])
    (child,) = sweep_children(client, parent.info.run_id)
    assert child.info.run_id == failed_child["run_id"], "a resume must not start a second tracking run"
    assert parent.info.status == "FINISHED" and child.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "pretrain/loss")]
    assert sorted(steps) == [0, 1], "resumed from the bucket's checkpoint: epoch 0 was not repeated"
    # The logged model's checkpoint, as a URI a user can open (Tune reports it without the scheme).
    assert child.data.tags[TAG_CHECKPOINT].startswith(f"s3://{store.bucket}/results/s3-train/")
    # The runs' artifacts (the parent's trial table, the child's model) went through the server to the bucket.
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
    assert any(key.endswith("trials.json") for key in artifacts)
    assert any(key.startswith(f"mlartifacts/{parent.info.experiment_id}/") and "/MLmodel" in key for key in artifacts)

    # The synthetic sets, built once by the driver on the head, and the trial's frozen features.
    assert any(key.endswith("/.complete") and "synthetic-aloi" in key for key in cached)
    assert any(key.startswith("data-cache/features/") and key.endswith("features.parquet") for key in cached)
    # The worker node read them from its own mirror, filled from the bucket: the head's copy is behind the wall.
    assert any("synthetic-aloi" in path for path in worker_cache), worker_cache


def drive(bucket: str, tracking_uri: str) -> dict:
    """The sweep's driver, run inside the head: the tiny trial failing after epoch 0, then
    `--resume`; what Ray's state API says about where its work ran."""
    import urllib.request

    import ray
    from mlflow.tracking import MlflowClient
    from ray.util.state import list_actors, list_tasks

    from datasets.ray_connection import init_ray
    from orchestrator.config import SweepSettings
    from orchestrator.sweep import run_sweep
    from orchestrator.tracking.keys import TAG_ERROR
    from tests.conftest import sweep_children
    from tests.tiny import tiny_config

    for _ in range(240):  # the server starts beside the head's Ray (seconds on a quiet machine)
        try:
            with urllib.request.urlopen(f"{tracking_uri}/health", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    sys.stdin.readline()  # the test's word that both nodes are up
    init_ray(quiet=True)
    base = tiny_config(f"s3://{bucket}/data-cache", inject_failure_at_epoch=0).override({"invariances": "viewpoint"})
    # max_failures=0: a cluster would retry the Train run itself (orchestrator.cluster); this is about --resume.
    settings = SweepSettings(name="s3", storage_path=f"s3://{bucket}/results", tracking_uri=tracking_uri,
                             experiment="s3", max_failures=0)
    failed = run_sweep(base, {}, settings)
    client = MlflowClient(tracking_uri)  # what MLflow held after the failure, read before the resume
    failed_children = [{"run_id": r.info.run_id, "status": r.info.status, "error": r.data.tags.get(TAG_ERROR, ""),
                        "params": sorted(r.data.params),
                        "loss_steps": [m.step for m in client.get_metric_history(r.info.run_id, "pretrain/loss")]}
                       for r in sweep_children(client, failed.parent_run_id)]
    resumed = run_sweep(base, {}, settings.replace(resume=True))
    address = os.environ["RAY_ADDRESS"]
    workers = list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker")], limit=1000,
                          raise_on_missing_output=False)
    evaluations = list_tasks(address=address, filters=[("name", "=", f"evaluation-{base.arch}")], limit=1000,
                             raise_on_missing_output=False)
    return {
        "driver_node": ray.get_runtime_context().get_node_id(),
        "nodes": [{"node_id": n["NodeID"], "ip": n["NodeManagerAddress"], "cpus": n["Resources"].get("CPU", 0)}
                  for n in ray.nodes() if n["Alive"]],
        "train_worker_nodes": [a.node_id for a in workers],
        "evaluation_nodes": sorted({t.node_id for t in evaluations}),
        "failed": {"errors": failed.errors, "parent_run_id": failed.parent_run_id, "children": failed_children},
        "resumed": {"errors": resumed.errors, "parent_run_id": resumed.parent_run_id, "rows": resumed.rows},
    }


if __name__ == "__main__":
    facts = drive(*sys.argv[1:3])
    print(FACTS + json.dumps(facts, default=str), flush=True)
