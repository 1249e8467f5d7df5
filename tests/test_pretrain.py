"""The Ray Train pretraining loop end to end, in one two-worker run: reports, checkpoints,
resume, the shared queue, skipped images, and the evaluation of all six invariances."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import ray.train
import torch
from ray.train.torch import TorchTrainer
from torch.utils.data import DistributedSampler

from datasets.image_folder import scan_image_folder
from datasets.invariance_sets import INVARIANCES
from tests.tiny import tiny_config
from trainables.config import TrialConfig
from trainables.pretrain import CHECKPOINT_FILE, train_loop_per_worker
from trainables.trial import evaluation_report, fit_with_retries

pytestmark = pytest.mark.slow


def with_corrupt_images(source: Path, target: Path, train: int, val: int) -> Path:
    """A copy of an image-folder root with `train` + `val` undecodable PNGs added."""
    shutil.copytree(source, target)
    for split, count in (("train", train), ("val", val)):
        classes = sorted(p for p in (target / split).iterdir() if p.is_dir())
        for i in range(count):
            (classes[i % len(classes)] / f"{classes[i % len(classes)].name}_corrupt{i}.png").write_bytes(b"not a png")
    return target


def event_log_callback(path: Path):
    """A Train callback (it runs in the controller) appending every report and failure to `path`."""

    class EventLog(ray.train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            with open(path, "a") as f:
                f.write(json.dumps({"report": metrics, "checkpoint": checkpoint is not None}) + "\n")

        def after_exception(self, run_context, worker_exceptions):
            with open(path, "a") as f:
                f.write(json.dumps({"exception": {r: str(e) for r, e in worker_exceptions.items()}}) + "\n")

    return EventLog()


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def fit(config: TrialConfig, storage: Path, name: str, num_workers: int = 1, max_failures: int = 0):
    """A Train run of `config` as a sweep trial runs it: Train itself never retries
    (`FailureConfig(max_failures=0)`); `fit_with_retries` starts a new run of the same name,
    which resumes from the last checkpoint. Returns the result, the events of every run
    and the index of each run started."""
    events, runs = storage / f"{name}-events.jsonl", []

    def one_run():
        runs.append(len(runs))
        return TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"trial": config},
            scaling_config=ray.train.ScalingConfig(num_workers=num_workers, resources_per_worker={"CPU": 1}),
            run_config=ray.train.RunConfig(
                name=name, storage_path=str(storage),
                failure_config=ray.train.FailureConfig(max_failures=0),
                callbacks=[event_log_callback(events)],
            ),
        ).fit()

    result = fit_with_retries(one_run, max_failures)
    return result, read_events(events), runs


def load(run_dir: Path, epoch: int) -> dict:
    return torch.load(run_dir / f"checkpoint_epoch_{epoch:04d}" / CHECKPOINT_FILE, weights_only=True)


def assert_final_metrics(result, config: TrialConfig, skipped: int) -> None:
    """The last epoch's report, then the evaluation stage on its checkpoint."""
    metrics = result.metrics
    assert metrics["epoch"] == 1 and "probe/linear_top1" not in metrics  # no rank evaluates
    assert math.isfinite(metrics["pretrain/loss"]) and metrics["pretrain/images_per_second"] > 0
    assert -1.0 <= metrics["pretrain/positive_similarity"] <= 1.0  # MoCo's step metric, reported per epoch
    evaluation = evaluation_report(config, result)
    assert evaluation["epoch"] == 1
    for factor in INVARIANCES:  # the paper's six (the tiny config's default)
        for k in (10, 25):
            assert 0.0 <= evaluation[f"ris/{factor}/top{k}"] <= 100.0
    assert 0.0 <= evaluation["probe/linear_top1"] <= 100.0
    assert evaluation["data/skipped_images"] == skipped


@pytest.fixture(scope="module")
def config(data_cache, tmp_path_factory) -> TrialConfig:
    """Tiny config; the probe set has 1 + 1 corrupt images, which evaluation must skip and count."""
    config = tiny_config(data_cache)
    probe_root = with_corrupt_images(config.root("pretrain"), tmp_path_factory.mktemp("probe") / "objects",
                                     train=1, val=1)
    return config.override({"data.probe": "image-folder", "data.probe.root": str(probe_root)})


def test_two_workers_resume_after_a_failure_share_the_queue_checkpoint_and_count_skipped_images(ray_session, config,
                                                                                                 tmp_path):
    """One Train run and its retry for every claim about the loop (a run costs tens of
    seconds): per-epoch reports and checkpoints, the resume of a new run of the same name
    from the last checkpoint (a sweep's retry after a lost worker), the shared queue,
    skipped images, the evaluation.
    (One worker without a failure is what every sweep trial runs: tests/test_sweep.py.)"""
    pretrain_root = with_corrupt_images(config.root("pretrain"), tmp_path / "objects", train=3, val=0)
    config = config.override({"data.pretrain": "image-folder", "data.pretrain.root": str(pretrain_root),
                              "inject_failure_at_epoch": 0})
    result, events, runs = fit(config, tmp_path, "two-workers", num_workers=2, max_failures=1)
    assert runs == [0, 1]  # the failure may pass (not a data or config error): one retry, a new Train run

    exceptions = [e["exception"] for e in events if "exception" in e]
    # (The controller may see the two ranks fail in one status poll or in two.)
    assert exceptions and all("injected failure after epoch 0" in json.dumps(e) for e in exceptions), exceptions
    reports = [e["report"] for e in events if "report" in e]
    # Epoch 0 ran once; the second run's workers resumed from its checkpoint with epoch 1.
    assert [r[0]["epoch"] for r in reports] == [0, 1]
    for per_worker in reports:  # both ranks report the same metrics
        assert len(per_worker) == 2 and per_worker[0] == per_worker[1]
        assert math.isfinite(per_worker[0]["pretrain/loss"])
    assert all(e["checkpoint"] for e in events if "report" in e)  # every epoch checkpointed

    # The images the last epoch's samplers hand to each worker, in full batches of 8. An
    # unreadable image is replaced by the next readable one, each file stepped over counted.
    samples, _ = scan_image_folder(pretrain_root / "train")
    corrupt = np.array(["corrupt" in path.name for path, _ in samples])
    assert corrupt.sum() == 3
    expected_skipped = 0
    for rank in (0, 1):
        sampler = DistributedSampler(range(len(samples)), num_replicas=2, rank=rank, shuffle=True,
                                     seed=config.seed, drop_last=True)
        sampler.set_epoch(1)
        indices = list(sampler)
        for i in indices[: len(indices) // 8 * 8]:
            while corrupt[i % len(samples)]:
                expected_skipped, i = expected_skipped + 1, i + 1
    assert result.metrics["pretrain/skipped_images"] == expected_skipped
    assert_final_metrics(result, config, skipped=expected_skipped + 2)

    saved, resumed = load(tmp_path / "two-workers", 0), load(tmp_path / "two-workers", 1)
    assert (saved["epoch"], resumed["epoch"]) == (0, 1)
    assert set(resumed) == {"model", "optimizer", "scheduler", "epoch", "scaler"}
    assert {"queue", "queue_ptr"} <= set(resumed["model"])
    assert any(k.startswith("encoder_k.") for k in resumed["model"])
    assert any(k.startswith("encoder_q.head.") for k in resumed["model"])
    # Every batch is full (unreadable images are replaced), so epoch 0 filled slots
    # [0, 32). Resumed with the saved queue and pointer, epoch 1 appended the next 32 keys
    # after them and left those slots alone.
    ptr, queue = int(saved["model"]["queue_ptr"]), resumed["model"]["queue"]
    added = (int(resumed["model"]["queue_ptr"]) - ptr) % 64
    assert ptr == 32 and added == 32 and int(resumed["model"]["queue_ptr"]) == 0  # 64 keys: wrapped around
    assert torch.equal(queue[:, :ptr], saved["model"]["queue"][:, :ptr])
    assert not torch.equal(queue[:, ptr:ptr + added], saved["model"]["queue"][:, ptr:ptr + added])
    # The schedule went on from the saved one: two cosine steps over two epochs end at 0.
    assert resumed["scheduler"]["last_epoch"] == 2
    assert resumed["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
