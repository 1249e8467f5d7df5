"""A trial's evaluation of a frozen backbone: Top-K RIS on ALOI and a linear probe.

Produces the metrics named in docs/internals.md: `ris/<factor>/top10`,
`ris/<factor>/top25` for each factor of `config["ris_invariances"]`,
`probe/linear_top1` and `data/skipped_images` (images that failed to decode here).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from datasets.aloi import read_aloi
from datasets.image_folder import ImageFolderDataset
from trainables.augment import eval_transform
from trainables.data import aloi_root, objects_root, split_dir
from trainables.features import extract_features
from trainables.invariance import representation_invariance_score
from trainables.probes import linear_probe_top1

RIS_TOP_K = (10, 25)


def invariance_factors(config: dict[str, Any]) -> list[str]:
    """The ALOI factors of `config["ris_invariances"]` (comma-separated; may be empty)."""
    return [f.strip() for f in str(config["ris_invariances"]).split(",") if f.strip()]


def evaluate(backbone: nn.Module, config: dict[str, Any], device: torch.device | str) -> dict[str, float]:
    """All evaluation metrics of `backbone` (image -> pooled features), frozen."""
    transform = eval_transform(int(config["image_size"]))
    batch_size = int(config["eval_batch_size"])
    metrics: dict[str, float] = {}
    skipped = 0

    factors = invariance_factors(config)
    if factors:
        root = aloi_root(config)
        for factor in factors:
            aloi = read_aloi(root, factor, max_objects=int(config["ris_max_objects"]))
            features, index, n_skipped = extract_features(backbone, aloi.paths, batch_size, device, transform)
            skipped += n_skipped
            # `index` holds the positions of the images that decoded: keep their annotations.
            scores = representation_invariance_score(
                features, aloi.targets[index], aloi.trajectories[index], top_k=RIS_TOP_K)
            for k in RIS_TOP_K:
                metrics[f"ris/{factor}/top{k}"] = scores[k]

    root = objects_root(str(config["probe_data"]), config)
    train_x, train_y, n_train_skipped = extract_features(
        backbone, ImageFolderDataset(split_dir(root, "train"), transform=transform), batch_size, device)
    val_x, val_y, n_val_skipped = extract_features(
        backbone, ImageFolderDataset(split_dir(root, "val"), transform=transform), batch_size, device)
    skipped += n_train_skipped + n_val_skipped
    metrics["probe/linear_top1"] = linear_probe_top1(train_x, train_y, val_x, val_y, seed=int(config["seed"]))
    metrics["data/skipped_images"] = skipped
    return metrics
