"""MLflow tracking: parent run per sweep, child run per trial, found again on resume."""
from __future__ import annotations

import os
import pickle
import threading
from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator import compare
from orchestrator.config import ConfigError
from orchestrator.tracking.callback import MLflowTrialCallback
from orchestrator.tracking.keys import (
    EXPERIMENT_KIND_TRAINING,
    TAG_ERROR,
    TAG_EXPERIMENT_KIND,
    TAG_EXPORT_ERROR,
    TAG_GIT_DIRTY,
    TAG_MODEL_FORMAT,
    TAG_MODEL_URI,
    TAG_PARENT,
    TAG_TRACKING_ERRORS,
    metrics_of,
)
from orchestrator.tracking.runs import SweepTracker
from orchestrator.tracking.source import GIT_COMMIT_ENV_VAR
from orchestrator.tracking.store import resolve_tracking_uri
from orchestrator.tracking.writer import MLFLOW_HTTP_POLICY, use_one_retry_policy, with_retries
from tests.conftest import REPO_ROOT
from tests.tiny import tiny_config
from trainables.config import TrialConfig


def fake_trial(trial_id, data_cache=None, **changes):
    """A Tune trial as the callback sees it: its id and its nested config (tiny data when a
    cache is given: the callback lists the datasets a trial reads)."""
    base = tiny_config(data_cache) if data_cache else TrialConfig()
    nested = base.override(changes).to_nested()
    return SimpleNamespace(trial_id=trial_id, config=nested, __str__=lambda self: trial_id)


def test_relative_sqlite_uri_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"


def test_only_project_metrics_are_logged():
    result = {"pretrain/loss": 3.5, "ris/viewpoint/top10": 80.0, "epoch": 1,
              "training_iteration": 2, "probe/linear_top1": float("nan"), "done": True}
    assert metrics_of(result) == {"pretrain/loss": 3.5, "ris/viewpoint/top10": 80.0}


def test_run_names_leave_out_knobs_of_other_grid_choices(tmp_path):
    # A grid over data sources sweeps each source's own settings; a trial names only its own.
    callback = MLflowTrialCallback("sqlite:///x.db", "exp", "s", str(tmp_path),
                                   knobs=["seed", "data.pretrain", "data.pretrain.trainval", "data.pretrain.background"])
    params = {"seed": 1, "data.pretrain": "synthetic-objects", "data.pretrain.trainval": None,
              "data.pretrain.background": "clutter"}
    assert callback.run_name(params, "t0") == "pretrain=synthetic-objects background=clutter seed=1"
    assert callback.run_name({}, "t0") == "t0"


def test_run_names_show_the_values_within_the_runs_tables_width(tmp_path):
    video = MLflowTrialCallback("sqlite:///x.db", "exp", "s", str(tmp_path), knobs=["method", "method.frame_gap", "seed"])
    assert video.run_name({"method": "fti", "method.frame_gap": 5, "seed": 1}, "t0") == "fti k=5 seed=1"
    crop = MLflowTrialCallback("sqlite:///x.db", "exp", "s", str(tmp_path), knobs=["method.crop_scale_min"])
    assert crop.run_name({"method.crop_scale_min": 0.08}, "t0") == "crop_min=0.08"


def test_data_figures_are_tags_and_a_nonzero_skipped_count_warns(tmp_path, data_cache, caplog):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    callback = MLflowTrialCallback(uri, "exp", "figures", str(tmp_path / "figures"), knobs=["method.crop_scale_min"])
    callback.setup()
    trial = fake_trial("t_00009", data_cache, **{"method.crop_scale_min": 0.2})
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"epoch": 1, "ris/viewpoint/top10": 70.0, "data/ris_targets/viewpoint": 32,
                                            "data/skipped_images": 0, "data/train_images": 1200})
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]  # zero: nothing to say
    callback.on_trial_result(0, [], trial, {"epoch": 1, "data/skipped_images": 3})
    assert callback.flush()
    run = MlflowClient(uri).get_run(callback._runs["t_00009"])
    assert run.data.metrics == {"ris/viewpoint/top10": 70.0}  # the only metric; the figures are tags
    assert {k: v for k, v in run.data.tags.items() if k.startswith("data/")} == {
        "data/ris_targets/viewpoint": "32", "data/skipped_images": "3", "data/train_images": "1200"}
    [warning] = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert warning.startswith("trial crop_min=0.2: data/skipped_images = 3")


def test_trials_become_child_runs_and_a_resume_reuses_them(tmp_path, data_cache):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    make = lambda: MLflowTrialCallback(uri, "exp", "sweep-a", str(tmp_path / "sweep-a"),  # noqa: E731
                                       tags={"git_commit": "abc"}, knobs=["method.crop_scale_min"])
    trial = fake_trial("t_00000", data_cache, **{"method.crop_scale_min": 0.3, "invariances": "viewpoint",
                                                 "probes": ""})
    first = make()
    first.setup()
    first.on_trial_start(0, [], trial)
    first.on_trial_result(0, [], trial, {"epoch": 0, "pretrain/loss": 5.0})
    first.on_trial_error(0, [], trial)
    first.on_experiment_end([])

    # The driver restarts (Tuner.restore unpickles the callback): same parent, same child.
    second = pickle.loads(pickle.dumps(first))
    second.setup()
    second.on_trial_start(0, [], trial)
    second.on_trial_result(0, [], trial, {"epoch": 1, "pretrain/loss": 4.0, "ris/viewpoint/top10": 70.0})
    second.on_trial_complete(0, [], trial)
    second.on_experiment_end([])
    assert second.tracker.parent_run_id == first.tracker.parent_run_id

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("exp")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if TAG_PARENT in r.data.tags]
    assert len(runs) == 2 and len(children) == 1
    child = children[0]
    assert child.data.tags[TAG_PARENT] == first.tracker.parent_run_id
    # The trial's dotted keys, only of the parts it uses (no probe, no probe data), and
    # the run is named by the swept knob.
    assert child.data.params == {k: str(v) for k, v in TrialConfig.from_nested(trial.config).flat().items()}
    assert child.data.params["method.crop_scale_min"] == "0.3" and child.data.params["invariances"] == "viewpoint"
    assert not [k for k in child.data.params if k.startswith(("probes.", "data.probe"))]
    assert child.info.run_name == "crop_min=0.3"  # the full key stays a param (above)
    assert child.info.status == "FINISHED"
    history = client.get_metric_history(child.info.run_id, "pretrain/loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 5.0), (1, 4.0)]


def test_the_experiment_is_a_training_experiment_with_artifacts_beside_the_store(tmp_path, monkeypatch):
    # Created from another working directory, as under `ray job submit`: artifacts must not
    # follow the process's working directory.
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store}/mlflow.db"
    client = MlflowClient(uri)
    reused = client.create_experiment("old")  # made before this change: no kind tag
    first = SweepTracker(uri, "new", "s1", str(tmp_path / "s1"))
    again = SweepTracker(uri, "old", "s2", str(tmp_path / "s2"))
    assert again.experiment_id == reused
    for experiment_id in (first.experiment_id, reused):
        assert client.get_experiment(experiment_id).tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND_TRAINING
    assert client.get_experiment(first.experiment_id).artifact_location == (store / "mlartifacts").as_uri()
    parent = client.get_run(first.parent_run_id)
    assert parent.info.artifact_uri.startswith((store / "mlartifacts").as_uri())
    tags = parent.data.tags
    assert tags["mlflow.source.name"] and tags["mlflow.user"] and tags["mlflow.source.type"] == "LOCAL"
    assert tags[TAG_GIT_DIRTY] in ("true", "false")
    assert len(tags["mlflow.source.git.commit"]) == 40
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(ConfigError, match="experiment 'gone' is deleted; restore it"):
        SweepTracker(uri, "gone", "s3", str(tmp_path / "s3"))


def test_the_submitters_commit_tags_the_runs_where_the_code_has_no_clone(tmp_path, monkeypatch):
    """The project's image and a job's copy without `.git`: DSSL_GIT_COMMIT carries the commit
    (the parent run's `git_commit` tag and MLflow's source tags both come from git_commit)."""
    from orchestrator.tracking import source

    copy = tmp_path / "copy"  # the code, no .git (as in the image: Dockerfile.dockerignore)
    copy.mkdir()
    monkeypatch.setattr(source, "REPO_ROOT", copy)
    monkeypatch.delenv(GIT_COMMIT_ENV_VAR, raising=False)
    assert source.git_commit() == "unknown" and "mlflow.source.git.commit" not in source.source_tags()
    commit = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv(GIT_COMMIT_ENV_VAR, commit)
    assert source.git_commit() == commit == source.source_tags()["mlflow.source.git.commit"]
    # Read first, also in a clone: it is the submitter's word for the code the job runs.
    monkeypatch.setattr(source, "REPO_ROOT", REPO_ROOT)
    assert source.git_commit() == commit


def test_children_are_named_by_their_knobs_with_the_seed_and_list_their_datasets(tmp_path, data_cache):
    from ray import tune

    from orchestrator.search import knobs, trials_of

    _, trials = trials_of(tiny_config(data_cache), {"method": {"crop_scale_min": tune.grid_search([0.2, 0.5])},
                                                     "seed": tune.grid_search([0, 1, 2])})
    swept = knobs(trials)
    assert sorted(swept) == ["method.crop_scale_min", "seed"]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    callback = MLflowTrialCallback(uri, "exp", "seeds", str(tmp_path / "seeds"), knobs=swept)
    callback.setup()
    trial = fake_trial("t_00001", data_cache, **{"method.crop_scale_min": 0.5, "seed": 2})
    callback.on_trial_start(0, [], trial)
    assert callback.flush()
    run = MlflowClient(uri).get_run(callback._runs["t_00001"])
    assert run.info.run_name == "crop_min=0.5 seed=2"
    assert run.data.tags["mlflow.source.name"] and run.data.tags["mlflow.user"]
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"pretrain:synthetic-objects", "probe:synthetic-objects", "aloi:synthetic-aloi",
                           "got10k:synthetic-got10k", "pascal3d:synthetic-pascal3d"}
    assert {t.value for t in inputs["pretrain:synthetic-objects"].tags} == {"training"}
    assert {t.value for t in inputs["aloi:synthetic-aloi"].tags} == {"evaluation"}
    assert len(inputs["aloi:synthetic-aloi"].dataset.digest) == 16


def test_an_mlflow_failure_in_the_callback_is_retried_then_counted_never_raised(tmp_path, data_cache, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setattr(MLflowTrialCallback, "RETRY_DELAYS", (0.0, 0.0))
    callback = MLflowTrialCallback(uri, "exp", "flaky", str(tmp_path / "flaky"), knobs=["seed"])
    callback.setup()
    trial = fake_trial("t_00002", data_cache)
    callback.on_trial_start(0, [], trial)
    assert callback.flush()
    real_log_batch = MlflowClient.log_batch
    calls = []

    def failing(self, run_id, metrics=(), *args, **kwargs):
        if metrics:
            calls.append(run_id)
            raise MlflowException("injected: the tracking server is down")
        return real_log_batch(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", failing)
    callback.on_trial_result(0, [], trial, {"epoch": 0, "pretrain/loss": 5.0})  # must not raise
    assert callback.flush()
    assert len(calls) == 3 and callback.errors == 1  # tried three times, then counted
    monkeypatch.setattr(MlflowClient, "log_batch", real_log_batch)
    callback.on_trial_result(0, [], trial, {"epoch": 1, "pretrain/loss": 4.0})
    callback.on_trial_complete(0, [], trial)
    callback.on_experiment_end([])
    client = MlflowClient(uri)
    run_id = callback._runs["t_00002"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "pretrain/loss")] == [(1, 4.0)]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert client.get_run(callback.tracker.parent_run_id).data.tags[TAG_TRACKING_ERRORS] == "1"


def test_a_failed_trial_is_failed_with_its_error_as_a_tag(tmp_path, data_cache):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    callback = MLflowTrialCallback(uri, "exp", "bad", str(tmp_path / "bad"))
    callback.setup()
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback ...\nRuntimeError: injected failure after epoch 0")
    trial = fake_trial("t_00003", data_cache)
    trial.error_file = str(error_file)
    callback.on_trial_start(0, [], trial)
    callback.on_trial_error(0, [], trial)
    assert callback.flush()
    run = MlflowClient(uri).get_run(callback._runs["t_00003"])
    assert run.info.status == "FAILED"
    assert run.data.tags[TAG_ERROR].endswith("RuntimeError: injected failure after epoch 0")


def test_compare_finds_a_sweep_by_name_or_parent_id_and_prints_its_compare_page(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = SweepTracker(uri, "exp", "crop-1", str(tmp_path / "crop-1"))
    ids = [tracker.child_run(f"t{i}", f"method.crop_scale_min={v}", {}, {}) for i, v in enumerate((0.2, 0.5))]
    assert compare.main([tracker.parent_run_id, "--tracking-uri", uri, "--port", "5123"]) == 0
    by_id = capsys.readouterr().out.splitlines()
    assert compare.main(["crop-1", "--tracking-uri", uri, "--port", "5123"]) == 0
    by_name = capsys.readouterr().out.splitlines()
    assert by_id == by_name
    assert by_name[0] == f"Serve the UI first:  mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5123"
    assert by_name[1] == compare.compare_url("http://127.0.0.1:5123", tracker.experiment_id, ids)
    assert by_name[1].startswith("http://127.0.0.1:5123/#/compare-runs?runs=")
    assert all(run_id in by_name[1] for run_id in ids)

    assert compare.main(["no-such-sweep", "--tracking-uri", uri]) == 2
    assert "no sweep named 'no-such-sweep'" in capsys.readouterr().err
    assert compare.main([ids[0], "--tracking-uri", uri]) == 2
    assert "is a trial" in capsys.readouterr().err
    assert compare.main(["x", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert "no MLflow store" in capsys.readouterr().err


def test_with_a_tracking_server_the_urls_are_the_servers():
    assert compare.ui_base_url("https://mlflow.example.org/") == "https://mlflow.example.org"
    url = compare.compare_url(compare.ui_base_url("http://10.0.0.5:8080"), "7", ["a" * 32])
    assert url == (f"http://10.0.0.5:8080/#/compare-runs?runs=%5B%22{'a' * 32}%22%5D&experiments=%5B%227%22%5D"
                   "&workflowType=machine_learning")


def test_a_backbone_is_logged_in_the_runs_experiment_and_registered_on_request(tmp_path, data_cache):
    import mlflow
    import mlflow.pytorch
    import torch

    from orchestrator.tracking.logged_model import log_backbone
    from trainables.evaluation import load_backbone

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = SweepTracker(uri, "models", "m", str(tmp_path / "m"))
    run_id = tracker.child_run("t0", "seed=0", {}, {})
    trial = tiny_config(data_cache)
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": trial.method.build_model(trial).state_dict(), "epoch": 1}, checkpoint)

    model_uri = log_backbone(tracker.client, tracker.experiment_id, run_id, trial, checkpoint, "dssl-backbone")
    logged = tracker.client.get_logged_model(model_uri.removeprefix("models:/"))
    assert logged.experiment_id == tracker.experiment_id and logged.source_run_id == run_id
    assert logged.params["method.crop_scale_min"] == str(trial.method.crop_scale_min)
    assert logged.tags[TAG_MODEL_FORMAT] == "pt2" and TAG_EXPORT_ERROR not in logged.tags
    assert tracker.client.get_run(run_id).data.tags[TAG_MODEL_FORMAT] == "pt2"
    [version] = tracker.client.search_model_versions("name = 'dssl-backbone'")
    assert version.run_id == run_id
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        loaded = mlflow.pytorch.load_model("models:/dssl-backbone/1")
    finally:
        mlflow.set_tracking_uri(previous)
    images = torch.randn(5, 3, trial.image_size, trial.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # a batch of 5: the logged model's batch dimension is not fixed
        assert torch.allclose(loaded(images), load_backbone(trial, checkpoint)(images), atol=1e-6)


class WriteLog:
    """The callback's MLflow writes as they reach the store, in order: (what, run id, detail)."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, str, object]] = []
        real_update, real_terminate, real_batch = (MlflowClient.update_run, MlflowClient.set_terminated,
                                                   MlflowClient.log_batch)

        def update_run(client, run_id, status=None, *args, **kwargs):
            self.calls.append(("status", run_id, status))
            return real_update(client, run_id, status, *args, **kwargs)

        def set_terminated(client, run_id, status=None, *args, **kwargs):
            self.calls.append(("status", run_id, status))
            return real_terminate(client, run_id, status, *args, **kwargs)

        def log_batch(client, run_id, metrics=(), *args, **kwargs):
            if metrics:
                self.calls.append(("metrics", run_id, sorted({m.step for m in metrics})))
            return real_batch(client, run_id, metrics, *args, **kwargs)

        monkeypatch.setattr(MlflowClient, "update_run", update_run)
        monkeypatch.setattr(MlflowClient, "set_terminated", set_terminated)
        monkeypatch.setattr(MlflowClient, "log_batch", log_batch)


def blocked_model_export(monkeypatch, calls: list | None = None):
    """Make the callback's model export wait for the returned `release` event (the slow part
    of a real export and upload); `exporting` is set once it waits, `exported` once it is done."""
    from pathlib import Path

    from orchestrator.tracking import callback

    release, exporting, exported = threading.Event(), threading.Event(), threading.Event()

    def export(client, experiment_id, run_id, trial, checkpoint_file, registered_model_name=""):
        exporting.set()
        if calls is not None:
            calls.append(("model", run_id, str(checkpoint_file)))
        released = release.wait(20)
        exported.set()
        if not released:
            raise TimeoutError("the test never released the export")
        return "models:/m-exported"

    # Patched where the callback looks them up.
    monkeypatch.setattr(callback, "log_backbone", export)
    monkeypatch.setattr(callback, "checkpoint_file", lambda checkpoint, scratch: Path(checkpoint))
    return release, exporting, exported


def test_the_hooks_return_while_a_model_export_blocks_the_writer_and_all_is_written_in_order(
        tmp_path, data_cache, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    callback = MLflowTrialCallback(uri, "exp", "queued", str(tmp_path / "queued"), knobs=["seed"])
    callback.setup()
    writes = WriteLog(monkeypatch)
    release, exporting, exported = blocked_model_export(monkeypatch, writes.calls)
    first, second = fake_trial("t_00004", data_cache, seed=0), fake_trial("t_00005", data_cache, seed=1)
    callback.on_trial_start(0, [], first)
    callback.on_trial_result(0, [], first, {"epoch": 0, "pretrain/loss": 5.0, "checkpoint_path": "/ckpt/first"})
    callback.on_trial_complete(0, [], first)
    assert exporting.wait(20), "the writer never reached the model export"
    # The writer is inside the export: every hook below must still return at once.
    callback.on_trial_start(0, [], second)
    callback.on_trial_result(0, [], second, {"epoch": 0, "pretrain/loss": 6.0})
    callback.on_trial_result(0, [], second, {"epoch": 1, "pretrain/loss": 5.5})
    callback.on_trial_complete(0, [], second)
    assert not exported.is_set(), "a hook waited for the model export"
    assert callback.writer.pending() == 5  # the first trial's export, then the second trial's four writes
    release.set()
    callback.on_experiment_end([])

    run_of = callback._runs
    assert writes.calls == [
        ("status", run_of["t_00004"], "RUNNING"), ("metrics", run_of["t_00004"], [0]),
        ("model", run_of["t_00004"], "/ckpt/first"), ("status", run_of["t_00004"], "FINISHED"),
        ("status", run_of["t_00005"], "RUNNING"), ("metrics", run_of["t_00005"], [0]),
        ("metrics", run_of["t_00005"], [1]), ("status", run_of["t_00005"], "FINISHED"),
    ]
    client = MlflowClient(uri)
    assert client.get_run(run_of["t_00004"]).data.tags[TAG_MODEL_URI] == "models:/m-exported"
    assert [(m.step, m.value) for m in client.get_metric_history(run_of["t_00005"], "pretrain/loss")] == [
        (0, 6.0), (1, 5.5)]
    assert client.get_run(callback.tracker.parent_run_id).data.tags[TAG_TRACKING_ERRORS] == "0"


def test_writes_the_bounded_drain_does_not_reach_are_counted_lost(tmp_path, data_cache, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setattr(MLflowTrialCallback, "DRAIN_TIMEOUT_S", 0.2)
    callback = MLflowTrialCallback(uri, "exp", "cut", str(tmp_path / "cut"))
    callback.setup()
    release, exporting, _ = blocked_model_export(monkeypatch)
    first, second = fake_trial("t_00006", data_cache, seed=0), fake_trial("t_00007", data_cache, seed=1)
    callback.on_trial_result(0, [], first, {"epoch": 0, "pretrain/loss": 5.0, "checkpoint_path": "/ckpt/first"})
    callback.on_trial_complete(0, [], first)
    callback.on_trial_start(0, [], second)
    assert exporting.wait(20)
    callback.on_experiment_end([])  # the export still runs and the second start is queued: 2 lost
    callback.on_trial_complete(0, [], second)  # after the end: refused, counted
    assert callback.writer.lost == 3
    release.set()
    parent = MlflowClient(uri).get_run(callback.tracker.parent_run_id)
    assert parent.data.tags[TAG_TRACKING_ERRORS] == "2"


def test_an_interrupt_drains_the_writer_before_marking_runs_killed(tmp_path, data_cache, monkeypatch):
    from orchestrator.tracking.interrupt import InterruptMarker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setattr(InterruptMarker, "DRAIN_S", 0.2)
    callback = MLflowTrialCallback(uri, "exp", "stopped", str(tmp_path / "stopped"))
    callback.setup()
    trial = fake_trial("t_00008", data_cache)
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"epoch": 0, "pretrain/loss": 5.0})
    assert callback.flush()
    release = threading.Event()
    callback.writer.submit("a slow write", lambda: release.wait(20))
    callback.on_trial_complete(0, [], trial)  # queued behind it: would mark the run FINISHED
    InterruptMarker(SweepTracker(uri, "exp", "stopped", str(tmp_path / "stopped"))).mark()
    release.set()
    callback.on_experiment_end([])
    client = MlflowClient(uri)
    assert client.get_run(callback._runs["t_00008"]).info.status == "KILLED"
    assert client.get_run(callback.tracker.parent_run_id).data.tags[TAG_TRACKING_ERRORS] == "2"


def test_a_sick_tracking_server_costs_one_request_per_try(monkeypatch):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    for name in MLFLOW_HTTP_POLICY:  # unset for the test, restored after it
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert use_one_retry_policy() == MLFLOW_HTTP_POLICY
    requests = []

    class Unavailable(BaseHTTPRequestHandler):
        def answer(self):
            requests.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = MlflowClient(f"http://127.0.0.1:{server.server_address[1]}")
        ok, _ = with_retries("a tag", lambda: client.set_tag("0" * 32, "k", "v"), (0.0, 0.0))
    finally:
        server.shutdown()
        server.server_close()
    assert not ok
    assert len(requests) == 3  # our three tries, one request each: MLflow's own retries are off


def test_the_retry_policy_leaves_a_users_mlflow_settings_alone(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT")
    assert use_one_retry_policy() == {"MLFLOW_HTTP_REQUEST_TIMEOUT": MLFLOW_HTTP_POLICY["MLFLOW_HTTP_REQUEST_TIMEOUT"]}
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"


def test_a_backbone_torch_export_cannot_trace_is_pickled_and_tagged_so(tmp_path, data_cache, monkeypatch):
    import mlflow
    import mlflow.pytorch
    import torch

    import trainables.evaluation
    from orchestrator.tracking.logged_model import log_backbone

    class DataDependentBackbone(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 4)

        def forward(self, images):
            pooled = images.mean(dim=(2, 3))
            if pooled.sum() > 0:  # a branch on the data: torch.export cannot trace it
                return self.linear(pooled)
            return -self.linear(pooled)

    backbone = DataDependentBackbone()
    monkeypatch.setattr(trainables.evaluation, "load_backbone", lambda trial, path: backbone)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = SweepTracker(uri, "models", "m", str(tmp_path / "m"))
    run_id = tracker.child_run("t0", "seed=0", {}, {})
    model_uri = log_backbone(tracker.client, tracker.experiment_id, run_id, tiny_config(data_cache),
                             tmp_path / "unused.pt")
    tags = tracker.client.get_run(run_id).data.tags
    assert tags[TAG_MODEL_FORMAT] == "pickle"
    assert "data" in tags[TAG_EXPORT_ERROR].lower()  # torch's reason: a data-dependent expression
    logged = tracker.client.get_logged_model(model_uri.removeprefix("models:/"))
    assert logged.tags[TAG_MODEL_FORMAT] == "pickle" and logged.tags[TAG_EXPORT_ERROR] == tags[TAG_EXPORT_ERROR]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        loaded = mlflow.pytorch.load_model(model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(images), backbone(images))


def test_a_checkpoint_on_object_storage_is_tagged_with_its_scheme():
    from orchestrator.tracking.checkpoints import checkpoint_uri

    # Tune reports a bucket's checkpoint as a path inside the bucket; the tag must be openable.
    assert checkpoint_uri("dssl/results/a-train/t/checkpoint_epoch_0001", "s3://dssl/results/a") == \
        "s3://dssl/results/a-train/t/checkpoint_epoch_0001"
    assert checkpoint_uri("/tmp/results/a-train/t/checkpoint_epoch_0001", "/tmp/results/a") == \
        "/tmp/results/a-train/t/checkpoint_epoch_0001"
    assert checkpoint_uri("gs://b/c", "gs://b/r") == "gs://b/c"
