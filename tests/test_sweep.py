"""The crop-scale sweep end to end on local Ray: Tune -> Train -> evaluation -> MLflow,
then a failure and a resume that continues from the checkpoint in the same child runs."""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from ray import tune

from datasets.invariance_sets import INVARIANCES
from orchestrator.config import SweepSettings
from orchestrator.sweep import run_sweep
from orchestrator.tracking import TAG_PARENT
from tests.tiny import tiny_config

pytestmark = pytest.mark.slow

RIS_KEYS = [f"ris/{f}/top{k}" for f in INVARIANCES for k in (10, 25)]  # all six, 12 keys


def child_runs(uri, parent_id):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("e2e")
    return client, [r for r in client.search_runs([exp.experiment_id])
                    if r.data.tags.get(TAG_PARENT) == parent_id]


def test_sweep_fails_then_resumes_into_the_same_child_runs(ray_session, data_cache, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    base = tiny_config(data_cache, inject_failure_at_epoch=0)
    grid = {"method": {"crop_scale_min": tune.grid_search([0.2, 0.5]), "crop_scale_max": 1.0}}
    settings = SweepSettings(name="e2e", storage_path=str(tmp_path / "results"),
                             tracking_uri=uri, experiment="e2e")

    failed = run_sweep(base, grid, settings)
    assert len(failed.errors) == 2 and "injected failure" in " ".join(failed.errors)
    client, children = child_runs(uri, failed.parent_run_id)
    assert len(children) == 2 and {r.info.status for r in children} == {"FAILED"}
    for run in children:  # epoch 0 finished (and was checkpointed) before the failure
        assert [m.step for m in client.get_metric_history(run.info.run_id, "pretrain/loss")] == [0]
        assert "injected failure after epoch 0" in run.data.tags["dssl.error"]

    resumed = run_sweep(base, grid, SweepSettings(**{**settings.__dict__, "resume": True}))
    assert resumed.errors == [] and resumed.parent_run_id == failed.parent_run_id
    client, children = child_runs(uri, failed.parent_run_id)
    assert len(children) == 2, "a resume must not start a second tracking run"
    assert sorted(float(r.data.params["method.crop_scale_min"]) for r in children) == [0.2, 0.5]
    assert "inject_failure_at_epoch" not in children[0].data.params  # a test hook, not a param
    for run in children:
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "pretrain/loss")]
        assert sorted(steps) == [0, 1], "epoch 0 was not repeated: training resumed at epoch 1"
        for key in RIS_KEYS + ["probe/linear_top1", "pretrain/images_per_second"]:
            assert key in run.data.metrics, key
        for key in RIS_KEYS:
            assert 0.0 < run.data.metrics[key] <= 100.0
    assert len(resumed.rows) == 2 and all("ris/viewpoint/top10" in r and "pretrain/loss" in r for r in resumed.rows)
    assert sorted(r["method.crop_scale_min"] for r in resumed.rows) == [0.2, 0.5]
