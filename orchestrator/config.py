"""Typed trial configuration, presets and validation.

A trial is described by one flat dict (see docs/internals.md): flat so that it is at
once the Ray Tune `param_space`, the `train_loop_config` of the Ray Train run and the
MLflow params of the child run, with one spelling everywhere. `TrialConfig` is the typed
view of that dict; every check runs on the driver before any Ray work starts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from trainables.data import SYNTHETIC_ALOI, SYNTHETIC_OBJECTS

INVARIANCES = (
    "occlusion",
    "viewpoint",
    "illumination_direction",
    "illumination_color",
    "instance",
    "instance_viewpoint",
)
# Factors this release can score: the ALOI turntable ones (GOT-10k occlusion and
# PASCAL3D+ instance sets arrive with their readers).
SUPPORTED_INVARIANCES = ("viewpoint", "illumination_direction", "illumination_color")
METHODS = ("mocov2",)


class ConfigError(ValueError):
    """A configuration that cannot run; raised before any cluster work starts."""


@dataclass(frozen=True)
class TrialConfig:
    """One trial: pretraining, evaluation and the data they read (docs/internals.md)."""

    method: str = "mocov2"
    arch: str = "resnet18"
    image_size: int = 64
    crop_scale_min: float = 0.2
    crop_scale_max: float = 1.0
    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 1e-4
    cosine_schedule: bool = True
    moco_dim: int = 128
    moco_queue_size: int = 256
    moco_momentum: float = 0.99
    moco_temperature: float = 0.2
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    seed: int = 0
    pretrain_data: str = SYNTHETIC_OBJECTS
    probe_data: str = SYNTHETIC_OBJECTS
    aloi_data: str = SYNTHETIC_ALOI
    synthetic_objects: int = 200
    synthetic_classes: int = 8
    synthetic_train_per_class: int = 150
    synthetic_val_per_class: int = 50
    synthetic_background: str = "clutter"
    data_cache: str = ""
    ris_invariances: str = "viewpoint,illumination_direction,illumination_color"
    ris_max_objects: int = 32
    eval_batch_size: int = 256
    checkpoint_every: int = 1
    inject_failure_at_epoch: int = -1

    # -- views -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrialConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown trial config keys: {', '.join(unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> "TrialConfig":
        return TrialConfig.from_dict({**self.to_dict(), **changes})

    @property
    def invariances(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.ris_invariances.split(",") if s.strip())


PRESETS: dict[str, TrialConfig] = {
    # Finishes a 4-trial sweep on a 2-core laptop in minutes.
    "default": TrialConfig(),
    # The paper's settings (MoCo v2 hyper-parameters, ResNet-50 at 224 px) for real data
    # on a GPU cluster; point the *_data keys at the real dataset roots.
    "paper": TrialConfig(
        arch="resnet50",
        image_size=224,
        epochs=200,
        batch_size=256,
        lr=0.03,
        momentum=0.9,
        weight_decay=1e-4,
        moco_dim=128,
        moco_queue_size=65536,
        moco_momentum=0.999,
        moco_temperature=0.2,
        num_workers=8,
        use_gpu=True,
        cpus_per_worker=8,
        ris_max_objects=0,
        eval_batch_size=512,
        synthetic_objects=1000,
        synthetic_train_per_class=2000,
    ),
}


def preset(name: str) -> TrialConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def coerce(key: str, text: str) -> Any:
    """Parse a command-line `key=value` into the type of that TrialConfig field."""
    types = {f.name: f.type for f in fields(TrialConfig)}
    if key not in types:
        raise ConfigError(f"unknown trial config key {key!r}; known: {', '.join(sorted(types))}")
    kind = types[key]
    try:
        if kind in ("bool", bool):
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        if kind in ("int", int):
            return int(text)
        if kind in ("float", float):
            return float(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r}: expected {kind}") from None
    return text


def validate(config: TrialConfig) -> list[str]:
    """Every problem with one trial config, as readable sentences (empty: valid)."""
    c = config
    problems: list[str] = []
    for name in ("crop_scale_min", "crop_scale_max"):
        value = getattr(c, name)
        if not 0.0 < value <= 1.0:
            problems.append(f"{name}={value} is outside (0, 1]: it is a fraction of the image area")
    if c.crop_scale_min > c.crop_scale_max:
        problems.append(
            f"crop_scale_min={c.crop_scale_min} is larger than crop_scale_max={c.crop_scale_max}"
        )
    if c.method not in METHODS:
        problems.append(f"method={c.method!r} is not one of {', '.join(METHODS)}")
    import torchvision.models as tvm

    if not c.arch.startswith("resnet") or not hasattr(tvm, c.arch):
        problems.append(f"arch={c.arch!r} is not a torchvision ResNet (resnet18, resnet50, ...)")
    positive = ("image_size", "epochs", "batch_size", "moco_dim", "moco_queue_size",
                "num_workers", "cpus_per_worker", "eval_batch_size", "checkpoint_every",
                "synthetic_objects", "synthetic_classes", "synthetic_train_per_class",
                "synthetic_val_per_class")
    for name in positive:
        if getattr(c, name) < 1:
            problems.append(f"{name}={getattr(c, name)} must be at least 1")
    if c.image_size < 32:
        problems.append(f"image_size={c.image_size} is too small for a ResNet (at least 32)")
    if c.num_workers >= 1 and c.batch_size % c.num_workers:
        problems.append(
            f"batch_size={c.batch_size} is not divisible by num_workers={c.num_workers}"
        )
    if c.batch_size >= 1 and c.moco_queue_size % c.batch_size:
        problems.append(
            f"moco_queue_size={c.moco_queue_size} must be a multiple of the global "
            f"batch_size={c.batch_size} (each step enqueues the whole global batch)"
        )
    if not 0.0 <= c.moco_momentum < 1.0:
        problems.append(f"moco_momentum={c.moco_momentum} must be in [0, 1)")
    if c.moco_temperature <= 0:
        problems.append(f"moco_temperature={c.moco_temperature} must be positive")
    if c.lr <= 0:
        problems.append(f"lr={c.lr} must be positive")
    from datasets.synthetic.objects import BACKGROUNDS

    if c.synthetic_background not in BACKGROUNDS:
        problems.append(f"synthetic_background={c.synthetic_background!r} is not one of {', '.join(BACKGROUNDS)}")
    if c.ris_max_objects < 0:
        problems.append(f"ris_max_objects={c.ris_max_objects} must be >= 0 (0 = all)")
    unknown = [f for f in c.invariances if f not in INVARIANCES]
    if unknown:
        problems.append(f"ris_invariances has unknown factors {unknown}; known: {INVARIANCES}")
    unsupported = [f for f in c.invariances if f in INVARIANCES and f not in SUPPORTED_INVARIANCES]
    if unsupported:
        problems.append(
            f"ris_invariances {unsupported} are not available yet; this release scores "
            f"{', '.join(SUPPORTED_INVARIANCES)}"
        )
    if not c.invariances:
        problems.append("ris_invariances is empty")
    problems.extend(_data_problems(c))
    return problems


def _data_problems(c: TrialConfig) -> list[str]:
    """Check user-given dataset roots on the driver (fast structural checks only)."""
    from datasets.aloi import validate_aloi_root
    from datasets.errors import DatasetFormatError
    from datasets.image_folder import validate_image_folder_root

    problems: list[str] = []
    if c.aloi_data != SYNTHETIC_ALOI:
        try:
            validate_aloi_root(Path(c.aloi_data))
        except DatasetFormatError as err:
            problems.append(f"aloi_data: {err}")
    for key, splits in (("pretrain_data", ("train",)), ("probe_data", ("train", "val"))):
        root = getattr(c, key)
        if root == SYNTHETIC_OBJECTS:
            continue
        for split in splits:
            try:
                validate_image_folder_root(Path(root) / split)
            except DatasetFormatError as err:
                problems.append(f"{key}: {err}")
    return problems


def advisories(config: TrialConfig) -> list[str]:
    """Settings that run but are known to hurt the science; printed before a sweep starts.

    (Real datasets are checked when the loader has counted their images.)
    """
    from trainables.moco import queue_overlap_warning

    notes = []
    if config.pretrain_data == SYNTHETIC_OBJECTS:
        images = config.synthetic_classes * config.synthetic_train_per_class
        note = queue_overlap_warning(config.moco_queue_size, images, "synthetic-objects")
        if note:
            notes.append(note)
    return notes


def check(configs: Iterable[TrialConfig]) -> None:
    """Raise one ConfigError listing every problem of every config."""
    lines: list[str] = []
    for i, config in enumerate(configs):
        lines.extend(f"trial {i}: {p}" for p in validate(config))
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
    max_failures: int = 0  # Ray Train restarts of a trial's worker group
    tags: dict[str, str] = field(default_factory=dict)
