"""The crop-scale sweep end to end on local Ray: Tune -> Train -> evaluation -> MLflow, one
child run per trial. (A failure and a `--resume` into the same child runs:
tests/test_nodes_share_no_disk.py, on two nodes.)

The sweep is the session's shared one (`crop_sweep`, tests/conftest.py), which
tests/test_mlflow_ui.py also reads: one sweep's cost for both files."""
from __future__ import annotations

import pytest

from tests.conftest import CROP_SWEEP_MINS, CROP_SWEEP_RIS_KEYS

pytestmark = pytest.mark.slow


def test_sweep_logs_each_trial_into_its_child_run(crop_sweep):
    outcome, client, children = crop_sweep.outcome, crop_sweep.client, crop_sweep.children
    assert outcome.errors == []
    assert len(children) == 2
    assert sorted(float(r.data.params["method.crop_scale_min"]) for r in children) == CROP_SWEEP_MINS
    for run in children:
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "pretrain/loss")]
        assert sorted(steps) == [0, 1], "one loss per epoch"
        for key in CROP_SWEEP_RIS_KEYS + ["probe/linear_top1", "pretrain/images_per_second"]:
            assert key in run.data.metrics, key
        for key in CROP_SWEEP_RIS_KEYS:
            assert 0.0 < run.data.metrics[key] <= 100.0
    assert len(outcome.rows) == 2 and all("ris/viewpoint/top10" in r and "pretrain/loss" in r for r in outcome.rows)
    assert sorted(r["method.crop_scale_min"] for r in outcome.rows) == CROP_SWEEP_MINS
