"""Frozen features: a backbone's pooled output on every image of a set."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from datasets.image_folder import ImagePathDataset, collate_skip_corrupt


def extract_features(
    backbone: nn.Module,
    dataset_or_paths: Dataset | Sequence[str | Path],
    batch_size: int,
    device: torch.device | str,
    transform=None,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Run a frozen backbone over a dataset in eval mode.

    Args:
        backbone: image -> N x d pooled features (the trunk before the projection head).
        dataset_or_paths: a dataset yielding `(image, label)` already transformed, or
            image paths; paths are read with `ImagePathDataset`, labelled with their
            index, and need `transform` (e.g. `augment.eval_transform`).
        batch_size: images per forward pass.
        device: where the backbone runs.
        transform: the transform for paths; ignored for a dataset.
        num_workers: DataLoader worker processes.

    Returns:
        `(features, labels, n_skipped)`: N' x d float32 features, the N' labels of the
        images that decoded (for paths: their indices into `dataset_or_paths`, so callers
        can drop the matching annotations of skipped images), and the number skipped.
    """
    if isinstance(dataset_or_paths, Dataset):
        dataset = dataset_or_paths
    else:
        if transform is None:
            raise ValueError("extract_features: a list of paths needs a transform (e.g. augment.eval_transform)")
        paths = list(dataset_or_paths)
        dataset = ImagePathDataset(paths, labels=list(range(len(paths))), transform=transform)
    if len(dataset) == 0:
        raise ValueError("extract_features: the dataset is empty")

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_skip_corrupt)
    was_training = backbone.training
    backbone.eval()
    features, labels, skipped = [], [], 0
    with torch.inference_mode():
        for images, batch_labels, n_skipped in loader:
            skipped += int(n_skipped)
            if images is None or len(images) == 0:  # every image of the batch was corrupt
                continue
            features.append(backbone(images.to(device, non_blocking=True)).float().cpu())
            labels.append(torch.as_tensor(batch_labels))
    backbone.train(was_training)
    if not features:
        raise ValueError(f"extract_features: all {skipped} images failed to decode")
    return torch.cat(features).numpy(), torch.cat(labels).numpy(), skipped


class FeatureExtractor:
    """One frozen backbone's features, shared by every invariance set and probe of a trial.

    Calling it with a dataset or a list of paths returns ``(features, labels)`` as
    :func:`extract_features` does; the images that failed to decode are added to
    ``skipped`` (reported as ``data/skipped_images``). ``transform`` is the evaluation
    view, for parts that build their own datasets.
    """

    def __init__(self, backbone: nn.Module, device: torch.device | str, batch_size: int, transform):
        self.backbone = backbone
        self.device = device
        self.batch_size = batch_size
        self.transform = transform
        self.skipped = 0

    def __call__(self, dataset_or_paths: Dataset | Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
        features, labels, skipped = extract_features(
            self.backbone, dataset_or_paths, self.batch_size, self.device, self.transform)
        self.skipped += skipped
        return features, labels
