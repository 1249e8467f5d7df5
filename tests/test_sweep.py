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


def test_a_sweep_on_object_storage_checkpoints_resumes_and_caches_there(ray_session, object_store, tmp_path,
                                                                        monkeypatch):
    """Issue 23's object-storage test: `--storage-path s3://...` and an s3 data cache on an
    S3-compatible server (moto on 127.0.0.1, found through AWS_ENDPOINT_URL as MinIO would
    be), one trial failing after epoch 0 and resumed. Ray was started before the endpoint
    was set, as on a cluster whose nodes lack it: the sweep hands it on (datasets.storage)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.config import SweepSettings
    from orchestrator.sweep import run_sweep
    from orchestrator.tracking.keys import TAG_CHECKPOINT
    from tests.conftest import object_keys, sweep_children
    from tests.tiny import tiny_config

    # The data cache's local mirror (datasets.cache), new for this test so that the data and
    # features go through the bucket rather than a mirror left by an earlier run.
    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path / "mirror"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    base = tiny_config(f"s3://{object_store.bucket}/data-cache", inject_failure_at_epoch=0).override(
        {"invariances": "viewpoint"})
    settings = SweepSettings(name="s3", storage_path=f"s3://{object_store.bucket}/results", tracking_uri=uri,
                             experiment="s3")

    failed = run_sweep(base, {}, settings)
    assert failed.errors, "the injected failure after epoch 0 must fail the first run"
    checkpoints = {key.split("/checkpoint_")[0] for key in object_keys(object_store, "results/s3-train/")
                   if "/checkpoint_" in key}
    assert len(checkpoints) == 1, "epoch 0's checkpoint is in the bucket"
    assert any(key.endswith("tuner.pkl") for key in object_keys(object_store, "results/s3/"))

    resumed = run_sweep(base, {}, SweepSettings(**{**settings.__dict__, "resume": True}))
    assert resumed.errors == [] and resumed.parent_run_id == failed.parent_run_id
    assert resumed.rows[0]["ris/viewpoint/top10"] is not None and "probe/linear_top1" in resumed.rows[0]
    client = MlflowClient(uri)
    (child,) = sweep_children(client, resumed.parent_run_id)
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "pretrain/loss")]
    assert sorted(steps) == [0, 1], "resumed from the bucket's checkpoint: epoch 0 was not repeated"
    # The logged model's checkpoint, as a URI a user can open (Tune reports it without the scheme).
    assert child.data.tags[TAG_CHECKPOINT].startswith(f"s3://{object_store.bucket}/results/s3-train/")

    cached = object_keys(object_store, "data-cache/")
    # The synthetic sets, built once by the driver, and the trial's frozen features.
    assert any(key.endswith("/.complete") and "synthetic-aloi" in key for key in cached)
    assert any(key.startswith("data-cache/features/") and key.endswith("features.parquet") for key in cached)
