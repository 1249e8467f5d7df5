"""MLflow tracking: parent run per sweep, child run per trial, found again on resume."""
from __future__ import annotations

import pickle
from types import SimpleNamespace

from mlflow.tracking import MlflowClient

from orchestrator.tracking import TAG_PARENT, MLflowTrialCallback, metrics_of, resolve_tracking_uri
from trainables.config import TrialConfig


def fake_trial(trial_id, **changes):
    """A Tune trial as the callback sees it: its id and its nested config."""
    nested = TrialConfig().override(changes).to_nested()
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


def test_trials_become_child_runs_and_a_resume_reuses_them(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    make = lambda: MLflowTrialCallback(uri, "exp", "sweep-a", str(tmp_path / "sweep-a"),  # noqa: E731
                                       tags={"git_commit": "abc"}, knobs=["method.crop_scale_min"])
    trial = fake_trial("t_00000", **{"method.crop_scale_min": 0.3, "invariances": "viewpoint", "probes": ""})
    first = make()
    first.setup()
    first.on_trial_start(0, [], trial)
    first.on_trial_result(0, [], trial, {"epoch": 0, "pretrain/loss": 5.0})
    first.on_trial_error(0, [], trial)

    # The driver restarts (Tuner.restore unpickles the callback): same parent, same child.
    second = pickle.loads(pickle.dumps(first))
    second.setup()
    second.on_trial_start(0, [], trial)
    second.on_trial_result(0, [], trial, {"epoch": 1, "pretrain/loss": 4.0, "ris/viewpoint/top10": 70.0})
    second.on_trial_complete(0, [], trial)
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
    assert child.info.run_name == "method.crop_scale_min=0.3"
    assert child.info.status == "FINISHED"
    history = client.get_metric_history(child.info.run_id, "pretrain/loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 5.0), (1, 4.0)]
