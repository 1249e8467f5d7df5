"""Benchmark: does MoCo v2 pretraining learn? Linear-probe top-1, pretrained vs random init.

The claim under test is the one every figure of the paper rests on: a contrastively
pretrained encoder's frozen features classify held-out images better than the same
encoder at its random initialisation. This runs the production path, one Ray Train run
of `trainables.pretrain.train_loop_per_worker` (a GPU when there is one, else CPU), and
compares its `probe/linear_top1` (and RIS) with `trainables.evaluation.evaluate` on the
identical initial weights (same seed, same `build_model`), on the same held-out split.

At the default preset's budget on 2 CPU cores the probe does not move (BENCHMARKS.md):
MoCo tells the cluttered images apart by their backgrounds first. `--quick` runs the
small setting in which it learns within minutes on 2 cores (plain backgrounds, gentle
crops; :data:`QUICK_CHANGES`); `tests/test_learning.py` asserts its margin.

    python -m benchmarks.bench_learning                              # default preset, 20 epochs
    python -m benchmarks.bench_learning --quick                      # the learning test's setting
    python -m benchmarks.bench_learning --quick --set method.crop_scale_min=0.2
    python -m benchmarks.bench_learning --study dataset_bias --set data.pretrain=synthetic-coco-scenes --set probes=linear
    python -m benchmarks.run learning
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.machine import command_line, machine
from orchestrator.cli import parse_overrides
from orchestrator.config import ConfigError, advisories, check, preset
from orchestrator.study import SMALL_PRETRAIN_OBJECTS, SMALL_REGIME

DEFAULT_CHANGES = {"epochs": 20, "checkpoint_every": 1000}

# Where MoCo v2 learns in about 5 minutes of 2 CPU cores (measured in BENCHMARKS.md,
# "Does pretraining learn?"): 240 steps of 64 images at 32 px. Each change removes a
# reason the default preset learns slowly on a CPU budget:
QUICK_CHANGES = SMALL_REGIME | SMALL_PRETRAIN_OBJECTS | {
    "method.crop_scale_min": 0.9,  # the sweep's gentlest crops; at 0.2 the loss barely moves
    "epochs": 40,  # 6 steps each
    "invariances": "viewpoint",  # RIS on a small turntable set: not the point here
    # The claim is the linear probe and RIS; the default preset's VOC07 SVM probes would
    # generate scenes and fit SVMs at each of the three evaluations (~50 s per test).
    "probes": "linear",
}


def quick_changes(changes: dict | None = None) -> dict:
    """QUICK_CHANGES, then `changes`. When `changes` selects another method (e.g.
    ``method=supervised``), QUICK_CHANGES' MoCo settings (``method.*``) stay out: overrides
    apply the selection first, and another method has no ``queue_size`` to take them."""
    changes = dict(changes or {})
    quick = QUICK_CHANGES
    if changes.get("method", "mocov2") != "mocov2":
        quick = {k: v for k, v in QUICK_CHANGES.items() if not k.startswith("method.")}
    return quick | changes


def study_changes(sweep: str, changes: dict | None = None) -> dict:
    """A study's settings (``sweeps/<sweep>.py``'s ``STUDY.settings``), then `changes`: one arm
    of a study piloted, seed by seed, before the study runs. The study's part settings
    (``probes.voc07.protocol``...) stay out when `changes` selects other probes."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "sweeps" / f"{sweep}.py"
    if not path.is_file():
        raise ConfigError(f"--study {sweep}: no sweep file {path}")
    spec = importlib.util.spec_from_file_location(f"_study_{sweep}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    study = getattr(module, "STUDY", None)
    if study is None:
        raise ConfigError(f"--study {sweep}: {path} defines no STUDY")
    changes = dict(changes or {})
    settings = dict(study.settings)
    if "probes" in changes:
        settings = {k: v for k, v in settings.items() if not k.startswith("probes.")}
    return settings | changes


def trial_config(preset_name: str = "default", changes: dict | None = None):
    """The benchmarked trial: a preset, the benchmark's defaults, then dotted `changes`."""
    config = preset(preset_name).override(DEFAULT_CHANGES | (changes or {}))
    if config.use_gpu is False and torch.cuda.is_available():
        config = config.override({"use_gpu": True})
    check([config])
    for note in advisories(config):
        print(f"warning: {note}")
    return config


def random_init_metrics(trial, recalibrate_bn: bool = False) -> dict[str, float]:
    """The evaluation metrics (probe and RIS) of the encoder the pretraining run starts from.

    With `recalibrate_bn`, its batch-norm statistics are first re-estimated on the
    pretraining images (evaluation views, `torch.optim.swa_utils.update_bn`): a fresh
    network's running statistics (mean 0, variance 1) do not match any data, while the
    pretrained one's were estimated on it. Against this baseline a margin measures what
    contrastive learning changed in the weights, not BN calibration.
    """
    from torch.optim.swa_utils import update_bn
    from torch.utils.data import DataLoader

    from datasets.image_folder import ImageFolderDataset, collate_skip_corrupt
    from datasets.sources import split_dir
    from trainables import evaluation
    from trainables.augment import eval_transform
    from trainables.pretrain import build_model

    model = build_model(trial)  # seeded exactly as in train_loop_per_worker
    device = "cuda" if trial.use_gpu else "cpu"
    backbone = trial.method.backbone(model).to(device)
    if recalibrate_bn:
        images = ImageFolderDataset(split_dir(trial.root("pretrain"), "train"), transform=eval_transform(trial.image_size))
        update_bn(DataLoader(images, batch_size=trial.eval_batch_size, collate_fn=collate_skip_corrupt), backbone, device)
    return evaluation.evaluate(backbone, trial, device)


def pretrained_metrics(trial) -> dict:
    """Final metrics of one Ray Train pretraining run of `trial`, and of its evaluation stage."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from datasets.ray_connection import init_ray
    from orchestrator.sweep import prepare_data
    from trainables.pretrain import train_loop_per_worker
    from trainables.trial import evaluation_report, scaling_config

    prepare_data([trial])
    init_ray()
    with tempfile.TemporaryDirectory() as storage:
        trainer = TorchTrainer(train_loop_per_worker, train_loop_config={"trial": trial},
                               scaling_config=scaling_config(trial),
                               run_config=ray.train.RunConfig(name="learning", storage_path=storage))
        result = trainer.fit()
        return dict(result.metrics) | evaluation_report(trial, result)


def run(preset_name: str = "default", changes: dict | None = None) -> dict:
    trial = trial_config(preset_name, changes)
    start = time.perf_counter()
    baseline = random_init_metrics(trial)
    # BN is re-estimated on the pretraining image folder; a video method has none (frames).
    calibrated = random_init_metrics(trial, recalibrate_bn=True) if "pretrain" in trial.roles() else {}
    metrics = pretrained_metrics(trial)
    trained, untrained = float(metrics["probe/linear_top1"]), float(baseline["probe/linear_top1"])
    result = {
        "machine": machine(),
        "torch": torch.__version__,
        "command": command_line(),
        "preset": preset_name,
        "changes": {k: v for k, v in trial.flat().items() if v != preset(preset_name).flat().get(k)},
        "probe_classes": trial.data["probe"].classes,
        "probe_top1_random_init": round(untrained, 2),
        "probe_top1_random_init_bn_recalibrated": (round(float(calibrated["probe/linear_top1"]), 2)
                                                   if calibrated else "n/a (no pretraining image folder)"),
        "probe_top1_pretrained": round(trained, 2),
        "probe_margin_points": round(trained - untrained, 2),
        "final_pretrain_loss": round(float(metrics["pretrain/loss"]), 4),
        # What pretraining did to each invariance (the paper's question), same objects.
        "ris_random_init": {k: round(v, 2) for k, v in baseline.items() if k.startswith("ris/")},
        "ris_random_init_bn_recalibrated": {k: round(v, 2) for k, v in calibrated.items() if k.startswith("ris/")},
        "ris_pretrained": {k: round(float(metrics[k]), 2) for k in baseline if k.startswith("ris/")},
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    for key, value in result.items():
        print(f"{key:>26}: {value}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--quick", action="store_true",
                        help="the learning test's setting (QUICK_CHANGES), before any --set")
    parser.add_argument("--study", metavar="SWEEP",
                        help="start from a study's settings (sweeps/SWEEP.py STUDY), before any --set: "
                             "a pilot of one arm")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one trial-config key (dotted, repeatable), as in sweeps/*.py")
    args = parser.parse_args(argv)
    try:
        if args.quick and args.study:
            parser.error("--quick and --study are two starting points; give one")
        changes = parse_overrides(args.set)
        if args.quick:
            changes = quick_changes(changes)
        elif args.study:
            changes = study_changes(args.study, changes)
        run(args.preset, changes)
    except ConfigError as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
