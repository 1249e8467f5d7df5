"""Multi-node decisions, without a cluster: storage, failures, placement, data, tracking store."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import ray

import datasets.ray_connection
import orchestrator.cluster
import orchestrator.sweep
from datasets.cache import build_once, cache_root
from datasets.placement import CPU_NODE_RESOURCE, cpu_only_resources, cpu_stage_args
from orchestrator.cluster import (
    CLUSTER_MAX_FAILURES,
    ClusterView,
    _node_problems,
    default_max_failures,
    filesystem_type,
    placement_warnings,
    shared_data_cache,
    storage_problem,
    video_cache_problem,
    trial_driver_resources,
)
from orchestrator.config import ConfigError
from orchestrator.mlflow_server import (
    _redacted,
    check_tracking_uri,
    command_line,
    refusal,
    server_command,
    write_auth_config,
)
from orchestrator.mlflow_server import main as server_main
from orchestrator.sweep import TRIAL_DRIVER_RESOURCES
from tests.test_cli import run

ONE_NODE = ClusterView(nodes=1)
THREE_NODES = ClusterView(nodes=3, resources={"CPU": 24, "GPU": 2, CPU_NODE_RESOURCE: 2000})
AUTOSCALING = ClusterView(nodes=1, may_grow=True, resources={"CPU": 4, CPU_NODE_RESOURCE: 1000})
MOUNTS = """\
/dev/nvme0n1p1 / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
fs-0123.efs.us-east-1.amazonaws.com:/ /mnt/shared nfs4 rw,vers=4.1 0 0
10.0.0.2:/vol /mnt/shared/deep\\040dir nfs rw 0 0
"""


def test_the_filesystem_of_a_path_is_its_longest_mount_point():
    assert filesystem_type("/home/ray/ray_results", MOUNTS) == "ext4"
    assert filesystem_type("/mnt/shared/ray_results", MOUNTS) == "nfs4"
    assert filesystem_type("/mnt/shared/deep dir/x", MOUNTS) == "nfs"
    assert filesystem_type("/mnt/sharedness", MOUNTS) == "ext4"  # a prefix of the name is not a mount
    assert filesystem_type("/tmp", MOUNTS) == "tmpfs"


@pytest.mark.parametrize("view", [THREE_NODES, AUTOSCALING])
def test_a_node_local_storage_path_is_refused_on_several_nodes_naming_the_fix(view):
    problem = storage_problem("/home/ray/ray_results", view, fs_type="ext4")
    assert problem is not None and "/home/ray/ray_results" in problem and "ext4" in problem
    assert "s3://" in problem and "gs://" in problem and "NFS" in problem
    assert ("autoscaler" in problem) == view.may_grow


def test_shared_storage_and_single_nodes_are_accepted():
    for uri in ("s3://bucket/ray_results", "gs://bucket/runs", "abfs://c@acct/x"):
        assert storage_problem(uri, THREE_NODES) is None
    assert storage_problem("/mnt/shared/ray_results", THREE_NODES, fs_type="nfs4") is None
    assert storage_problem("file:///home/ray/r", THREE_NODES, fs_type="ext4") is not None
    assert storage_problem("/home/ray/ray_results", ONE_NODE, fs_type="ext4") is None


def test_video_stages_need_a_cache_every_node_mounts_on_several_nodes():
    from trainables.config import TrialConfig

    video, images = TrialConfig().override({"method": "fti"}), TrialConfig()
    for cache, kind in (("s3://bucket/runs/data-cache", None), ("/home/ray/.cache/demystify-ssl", "ext4")):
        problem = video_cache_problem([images, video], cache, THREE_NODES, fs_type=kind)
        assert problem is not None and "method fti" in problem and cache in problem
        assert "--set data_cache=" in problem
        assert video_cache_problem([video], cache, ONE_NODE, fs_type=kind) is None  # one node: any cache
        assert video_cache_problem([images], cache, THREE_NODES, fs_type=kind) is None  # no video stages
    assert video_cache_problem([video], "s3://b/c", AUTOSCALING) is not None  # nodes may join
    assert video_cache_problem([video], "/mnt/shared/cache", THREE_NODES, fs_type="nfs4") is None


def test_max_failures_defaults_to_restarts_on_a_cluster_only():
    assert default_max_failures(None, cluster=True) == CLUSTER_MAX_FAILURES >= 1
    assert default_max_failures(None, cluster=False) == 0
    assert default_max_failures(0, cluster=True) == 0  # the user's choice wins
    assert default_max_failures(5, cluster=False) == 5


def test_trial_drivers_and_cpu_stages_ask_for_a_cpu_node_where_the_cluster_marks_them():
    assert trial_driver_resources(TRIAL_DRIVER_RESOURCES, THREE_NODES) == {**TRIAL_DRIVER_RESOURCES, CPU_NODE_RESOURCE: 1.0}
    assert trial_driver_resources(TRIAL_DRIVER_RESOURCES, ONE_NODE) == TRIAL_DRIVER_RESOURCES
    assert cpu_stage_args(THREE_NODES.resources) == {"resources": {CPU_NODE_RESOURCE: 1.0}}
    assert cpu_stage_args({"CPU": 2}) == {}
    if not ray.is_initialized():
        assert cpu_only_resources() == {}  # no Ray connection: nothing asked for
    unmarked = ClusterView(nodes=2, resources={"CPU": 8, "GPU": 1})
    assert CPU_NODE_RESOURCE in placement_warnings(unmarked)[0]
    assert placement_warnings(THREE_NODES) == [] and placement_warnings(ONE_NODE) == []


def test_generated_data_moves_to_shared_storage_on_several_nodes(monkeypatch):
    monkeypatch.delenv("DSSL_CACHE_DIR", raising=False)
    assert shared_data_cache("s3://b/runs/", "", THREE_NODES) == "s3://b/runs/data-cache"
    assert shared_data_cache("/mnt/shared/r", "", AUTOSCALING) == "/mnt/shared/r/data-cache"
    assert shared_data_cache("/home/r", "", ONE_NODE) == ""
    assert shared_data_cache("s3://b/runs", "/data/cache", THREE_NODES) == "/data/cache"  # the user's
    monkeypatch.setenv("DSSL_CACHE_DIR", "/nfs/cache")
    assert shared_data_cache("s3://b/runs", "", THREE_NODES) == ""


def test_a_mirrored_cache_is_built_once_and_downloaded_elsewhere(tmp_path, monkeypatch):
    """Two nodes (two local caches) sharing one object-store cache: the second never builds."""
    mirror = (tmp_path / "bucket" / "data-cache").as_uri()
    built = []

    def build(folder):
        built.append(folder)
        (folder / "train").mkdir()
        (folder / "train" / "a.png").write_bytes(b"png")

    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path / "node-a"))
    first = build_once(cache_root(mirror) / "set-v1", build)
    assert len(built) == 1 and (first / "train" / "a.png").read_bytes() == b"png"
    assert (tmp_path / "bucket" / "data-cache" / "set-v1" / ".complete").is_file()

    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path / "node-b"))
    second = build_once(cache_root(mirror) / "set-v1", lambda f: pytest.fail("built again on node b"))
    assert second != first and str(second).startswith(str(tmp_path / "node-b"))
    assert (second / "train" / "a.png").read_bytes() == b"png" and (second / ".complete").is_file()


def test_every_node_runs_the_trials_checks(tmp_path):
    """The task each node runs reports a root that is missing there."""
    from tests.tiny import tiny_config

    trial = tiny_config(tmp_path).override({"data.aloi": "aloi", "data.aloi.root": "/no/such/aloi"})
    problems = _node_problems._function([trial])
    assert any("/no/such/aloi" in p for p in problems)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_store_is_named_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"tracking server http://127.0.0.1:\d+ is unreachable.*mlflow_server"):
        check_tracking_uri(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ConfigError, match="does not exist"):
        check_tracking_uri(f"sqlite:///{tmp_path}/missing/mlflow.db")
    # A database directly: MLflow would put the artifacts in the job's working directory.
    with pytest.raises(ConfigError, match=r"postgresql://u:\*\*\*@127.0.0.1.*is a database.*mlflow_server"):
        check_tracking_uri(f"postgresql://u:secret@127.0.0.1:{free_port()}/mlflow", timeout=2)
    with pytest.raises(ConfigError, match="--artifacts-destination"):
        check_tracking_uri("mysql+pymysql://u@db/mlflow")
    check_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")  # a new SQLite file is fine
    assert _redacted("postgresql://me:pw@db:5432/x") == "postgresql://me:***@db:5432/x"


def test_basic_auth_runs_mlflows_auth_app_with_users_in_the_runs_database(tmp_path, monkeypatch):
    assert "--app-name" not in server_command()
    command = server_command(basic_auth=True)
    assert command[command.index("--app-name") + 1] == "basic-auth"
    # MLflow's own reader (loaded from its file: the auth package needs the mlflow[auth] extra).
    import importlib.util

    import mlflow

    spec = importlib.util.spec_from_file_location("mlflow_auth_config",
                                                  Path(mlflow.__file__).parent / "server" / "auth" / "config.py")
    reader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reader)
    uri = "postgresql://mlflow@db:5432/mlflow?options=-csearch_path%3Dmlflow"  # a `%` survives the ini file
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(write_auth_config(str(tmp_path), uri)))
    config = reader.read_auth_config()
    assert config.database_uri == uri and config.admin_username == "admin"
    assert config.admin_password is None  # from MLFLOW_AUTH_ADMIN_PASSWORD, never written to the file


def test_the_server_runs_without_mlflows_job_runner_unless_the_environment_asks(tmp_path, monkeypatch):
    import orchestrator.mlflow_server as mlflow_server

    started = []
    monkeypatch.setattr(mlflow_server.os, "execvp", lambda file, argv: started.append(dict(os.environ)))
    monkeypatch.delenv(mlflow_server.JOB_EXECUTION_ENV_VAR, raising=False)
    server_main(["--folder", str(tmp_path / "server")])
    monkeypatch.setenv(mlflow_server.JOB_EXECUTION_ENV_VAR, "true")
    server_main(["--folder", str(tmp_path / "server")])
    assert [env[mlflow_server.JOB_EXECUTION_ENV_VAR] for env in started] == ["false", "true"]
    # MLflow's own reading of the variable (its server checks it before starting the runner).
    from mlflow.environment_variables import MLFLOW_SERVER_ENABLE_JOB_EXECUTION

    monkeypatch.setenv(mlflow_server.JOB_EXECUTION_ENV_VAR, "false")
    assert MLFLOW_SERVER_ENABLE_JOB_EXECUTION.name == mlflow_server.JOB_EXECUTION_ENV_VAR
    assert MLFLOW_SERVER_ENABLE_JOB_EXECUTION.get() is False


def test_a_sweep_with_an_unreachable_tracking_server_stops_before_ray(monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise AssertionError("Ray work started with an unreachable tracking server")

    monkeypatch.setattr(datasets.ray_connection, "init_ray", forbidden)
    monkeypatch.setattr(orchestrator.sweep, "prepare_data", forbidden)
    assert run(["--tracking-uri", f"http://127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MLflow tracking server") and "unreachable" in err


def refused(capsys, *argv: str) -> str:
    """The error `python -m orchestrator.mlflow_server ARGV` exits with (it must exit 2)."""
    with pytest.raises(SystemExit) as exited:
        server_main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_the_server_refuses_the_network_without_basic_auth(capsys):
    # Refused, never bound: every address but loopback needs the password (the wildcards included).
    for host in ("10.0.0.5", "0.0.0.0", "::", "mlflow.internal"):
        assert "--basic-auth" in refused(capsys, "--host", host), host
    for host in ("127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"):
        assert refusal(command_line().parse_args(["--host", host])) is None, host
    assert refusal(command_line().parse_args(["--host", "10.0.0.5", "--basic-auth"])) is None


def test_the_server_on_a_database_needs_a_named_artifacts_destination(capsys):
    database = "postgresql+psycopg2://mlflow:pw@db:5432/mlflow"
    err = refused(capsys, "--backend-store-uri", database)
    assert "--artifacts-destination" in err and "pw" not in err  # the password stays out of logs
    assert refusal(command_line().parse_args(["--backend-store-uri", database,
                                              "--artifacts-destination", "s3://b/mlartifacts"])) is None
    # SQLite's default sits in --folder, beside the store: no destination needed.
    assert refusal(command_line().parse_args(["--backend-store-uri", "sqlite:////srv/mlflow.db"])) is None
    # A driver that is not installed is named before MLflow fails on it.
    err = refused(capsys, "--backend-store-uri", "postgresql+no_such_driver://db/mlflow",
                  "--artifacts-destination", "s3://b/mlartifacts")
    assert "no_such_driver" in err and "postgresql+psycopg2://" in err


def test_the_server_binds_loopback_with_a_proxied_artifact_store_unless_told(tmp_path):
    command = server_command(folder=str(tmp_path))
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert "--serve-artifacts" in command
    assert command[command.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/mlflow.db"
    assert command[command.index("--artifacts-destination") + 1] == str(tmp_path / "mlartifacts")
    remote = server_command(host="10.0.0.5", backend_store_uri="postgresql://mlflow@db/mlflow",
                            artifacts_destination="s3://b/mlartifacts", allowed_hosts="10.0.*")
    assert remote[remote.index("--host") + 1] == "10.0.0.5" and "s3://b/mlartifacts" in remote
    assert remote[remote.index("--allowed-hosts") + 1] == "10.0.*"


def test_train_workers_can_be_pinned_to_a_node_group_by_custom_resources(tmp_path):
    from tests.tiny import tiny_config
    from trainables.trial import scaling_config

    trial = tiny_config(tmp_path).override({"worker_resources": "fake_gpu=1, ssd=0.5"})
    assert scaling_config(trial).resources_per_worker == {"CPU": 1.0, "fake_gpu": 1.0, "ssd": 0.5}
    assert "worker_resources" not in trial.flat()  # placement, not a param
    for bad in ("GPU=1", "fake_gpu", "fake_gpu=-1", "=2"):
        assert any("worker_resources" in p for p in tiny_config(tmp_path).override({"worker_resources": bad}).problems())
    assert any("inject_kill_mid_epoch=0" in p for p in tiny_config(tmp_path, inject_kill_mid_epoch=0).problems())


def test_a_head_that_declares_more_nodes_is_a_multi_node_cluster(monkeypatch):
    """A launcher cluster scaled to 0 workers: one node alive, more to come (DSSL_MULTI_NODE)."""
    monkeypatch.setattr(orchestrator.cluster, "_autoscaler_may_add_nodes", lambda: False)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "NodeID": "head"}])
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0, CPU_NODE_RESOURCE: 1000.0})
    monkeypatch.delenv(orchestrator.cluster.MULTI_NODE_ENV_VAR, raising=False)
    assert not orchestrator.cluster.cluster_view().multi_node
    monkeypatch.setenv(orchestrator.cluster.MULTI_NODE_ENV_VAR, "1")
    view = orchestrator.cluster.cluster_view()
    assert view.multi_node and storage_problem("/home/ray/ray_results", view, fs_type="ext4")
