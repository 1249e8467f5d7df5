"""Where a trial's data comes from: a real dataset root, or a generated synthetic one.

Workers call these themselves, so on a cluster every node generates the identical
synthetic set locally (the generators are deterministic, cached and lock-protected).
The synthetic sets are fixed datasets, like ImageNet: they are generated from the
generators' own default seed, not from the trial's `seed`, so trials that differ only
in their seed train and evaluate on the same images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets.errors import DatasetFormatError

SYNTHETIC_OBJECTS = "synthetic-objects"
SYNTHETIC_ALOI = "synthetic-aloi"


def objects_root(spec: str, config: dict[str, Any]) -> Path:
    """Root of an ImageNet-style set (`<root>/train/<class>/...`, `<root>/val/...`).

    `spec` is `"synthetic-objects"` (generated at the trial's `image_size`) or a path.
    """
    if spec == SYNTHETIC_OBJECTS:
        from datasets.synthetic.objects import ensure_synthetic_objects

        return ensure_synthetic_objects(
            num_classes=int(config["synthetic_classes"]),
            train_per_class=int(config["synthetic_train_per_class"]),
            val_per_class=int(config["synthetic_val_per_class"]),
            image_size=int(config["image_size"]),
            cache=str(config.get("data_cache", "")),
            background=str(config.get("synthetic_background", "clutter")),
        )
    return _existing_dir(spec)


def aloi_root(config: dict[str, Any]) -> Path:
    """Root of ALOI (holding `png4/`, `png2/` or `png/`), real or generated."""
    spec = str(config["aloi_data"])
    if spec == SYNTHETIC_ALOI:
        from datasets.synthetic.turntable import ensure_synthetic_aloi

        return ensure_synthetic_aloi(
            num_objects=int(config["synthetic_objects"]),
            image_size=int(config["image_size"]),
            cache=str(config.get("data_cache", "")),
        )
    return _existing_dir(spec)


def split_dir(root: Path, split: str) -> Path:
    """`<root>/<split>`, which must exist."""
    path = Path(root) / split
    if not path.is_dir():
        raise DatasetFormatError(f"{path}: missing the '{split}/' folder of an ImageNet-style dataset root")
    return path


def _existing_dir(spec: str) -> Path:
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise DatasetFormatError(f"{path}: dataset root does not exist or is not a folder")
    return path
