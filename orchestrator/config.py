"""Presets, command-line overrides, validation and sweep settings, on the driver.

The trial config itself is typed in ``trainables.config.TrialConfig`` (the run's
settings composed with the parts it names; docs/internals.md). This module builds it
from a preset and ``--set`` overrides, and checks every trial of a sweep before any Ray
work starts: every rule lives with its owner (the run, or one part), and this only
collects their sentences.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable

from datasets.registry import ConfigError
from datasets.sources.real import AloiSource, Got10kSource, ImageFolderSource, Pascal3DSource
from orchestrator.paper_tables import TABLE1
from trainables.config import TrialConfig
from trainables.methods.mocov2 import MoCoV2
from trainables.probes.linear import LinearProbe
from trainables.probes.voc07 import Voc07BoxesProbe, Voc07Probe

__all__ = ["ConfigError", "PRESETS", "SweepSettings", "TrialConfig", "advisories", "check", "parse_overrides", "preset"]

PRESETS: dict[str, TrialConfig] = {
    # Finishes a 4-trial sweep on a 2-core laptop in minutes. Besides linear top-1 it runs
    # the VOC07 SVM probes on the synthetic scenes (BENCHMARKS.md: their cost per trial),
    # under the `fast` SVM protocol: Goyal et al.'s 26-cost grid costs several times more
    # per trial (BENCHMARKS.md, "VOC07 SVM protocols"); paper-table sweeps set goyal2019.
    "default": TrialConfig(probes=(LinearProbe(), Voc07Probe(protocol="fast"), Voc07BoxesProbe(protocol="fast"))),
    # The paper's settings (MoCo v2 hyper-parameters, ResNet-50 at 224 px) for real data
    # on a GPU cluster. Its data roles are real roots with no path: it refuses to start
    # until they are set (--set data.pretrain.root=/data/imagenet ...). On synthetic data
    # its K = 65,536 queue would exceed the set (every query meeting its own image
    # among its negatives), and 224 px ResNet-50 runs are for GPUs anyway.
    "paper": TrialConfig(
        arch="resnet50",
        image_size=224,
        epochs=200,
        batch_size=256,
        lr=0.03,
        momentum=0.9,
        weight_decay=1e-4,
        method=MoCoV2(dim=128, queue_size=65536, momentum=0.999, temperature=0.2),
        num_workers=8,
        use_gpu=True,
        cpus_per_worker=8,
        ris_max_objects=0,
        eval_batch_size=512,
        data={"pretrain": ImageFolderSource(), "probe": ImageFolderSource(), "aloi": AloiSource(),
              "got10k": Got10kSource(), "pascal3d": Pascal3DSource()},
    ),
}


def preset(name: str) -> TrialConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["method.queue_size=512", ...]`` as an ordered dict of dotted keys to strings
    (typed by ``TrialConfig.override``)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def advisories(trial: TrialConfig) -> list[str]:
    """Settings that run but are known to hurt the science; printed before a sweep starts.

    The method judges its own data sizes (e.g. MoCo's queue against the pretraining set)
    where they are known before reading: generated sets. Real datasets are judged by the
    loader once it has counted their images.
    """
    notes = []
    for role, need in trial.method.roles.items():
        source = trial.data[role]
        sizes = [source.num_images(split) for split in need.needs]
        if sizes and None not in sizes:
            notes += trial.method.data_warnings(sum(sizes), f"data.{role}={source.name}")
    return notes


def check(trials: Iterable[TrialConfig]) -> None:
    """Raise one ConfigError listing every problem of every trial."""
    lines: list[str] = []
    for i, trial in enumerate(trials):
        lines.extend(f"trial {i}: {p}" for p in trial.problems())
    if lines:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(dict.fromkeys(lines)))


@dataclass(frozen=True)
class SweepSettings:
    """Where a sweep runs and records; not part of any trial's params."""

    name: str
    storage_path: str = ""  # "" = ./ray_results (local) or Ray's default on a cluster
    tracking_uri: str = ""  # "" = $MLFLOW_TRACKING_URI or sqlite:///mlflow.db
    experiment: str = "demystify-ssl"
    resume: bool = False
    max_concurrent_trials: int = 0  # 0 = as many as the cluster's resources allow
    max_failures: int | None = None  # restarts of a trial's Train run; None = 0 locally, 3 on a cluster
    tags: dict[str, str] = field(default_factory=dict)
    log_models: bool = True  # each finished trial's backbone as an MLflow model
    register_model: str = ""  # also register those models under this name ("" = do not)
    # The tables its parent run gets (orchestrator.table_spec.TableSpec; the paper's Table 1 layout).
    tables: tuple = field(default_factory=lambda: (TABLE1,))

    def replace(self, **changes: Any) -> "SweepSettings":
        return dataclasses.replace(self, **changes)
