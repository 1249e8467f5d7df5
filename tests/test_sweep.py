"""The crop-scale sweep end to end on local Ray: Tune -> Train -> evaluation -> MLflow,
then a failure and a resume that continues from the checkpoint in the same child runs.

The sweep is the session's shared one (`crop_sweep`, tests/conftest.py), which
tests/test_mlflow_ui.py also reads: one sweep's cost for both files."""
from __future__ import annotations

import pytest

from tests.conftest import CROP_SWEEP_MINS, CROP_SWEEP_RIS_KEYS

pytestmark = pytest.mark.slow


def test_sweep_fails_then_resumes_into_the_same_child_runs(crop_sweep):
    failed, children = crop_sweep.failed, crop_sweep.failed_children
    assert len(failed.errors) == 2 and "injected failure" in " ".join(failed.errors)
    assert len(children) == 2 and {r.info.status for r in children} == {"FAILED"}
    for run in children:  # epoch 0 finished (and was checkpointed) before the failure
        assert crop_sweep.failed_loss_steps[run.info.run_id] == [0]
        assert "injected failure after epoch 0" in run.data.tags["dssl.error"]

    resumed, client = crop_sweep.outcome, crop_sweep.client
    assert resumed.errors == [] and resumed.parent_run_id == failed.parent_run_id
    children = crop_sweep.children
    assert len(children) == 2, "a resume must not start a second tracking run"
    assert {r.info.run_id for r in children} == {r.info.run_id for r in crop_sweep.failed_children}
    assert sorted(float(r.data.params["method.crop_scale_min"]) for r in children) == CROP_SWEEP_MINS
    assert "inject_failure_at_epoch" not in children[0].data.params  # a test hook, not a param
    for run in children:
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "pretrain/loss")]
        assert sorted(steps) == [0, 1], "epoch 0 was not repeated: training resumed at epoch 1"
        for key in CROP_SWEEP_RIS_KEYS + ["probe/linear_top1", "pretrain/images_per_second"]:
            assert key in run.data.metrics, key
        for key in CROP_SWEEP_RIS_KEYS:
            assert 0.0 < run.data.metrics[key] <= 100.0
    assert len(resumed.rows) == 2 and all("ris/viewpoint/top10" in r and "pretrain/loss" in r for r in resumed.rows)
    assert sorted(r["method.crop_scale_min"] for r in resumed.rows) == CROP_SWEEP_MINS
