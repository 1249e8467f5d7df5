"""The ``alignment`` part: the first layer's eigenspace alignment with its pretraining data,
``analysis/first_layer_alignment`` (Maennel et al. 2020; ``trainables.alignment``).

It reads the ``pretrain`` role's ``train/`` images (the images the method pretrained on, or
the same source for an epochs=0 row), a fixed sample of ``max_images`` of them (the same
images for every trial on that set, whatever its seed), resized and normalised as the
evaluation sees them, and scores the covariance of the evaluated network's first
convolution's filters against the covariance of the patches that convolution reads from
them. A network without a convolution reports nothing. It is a probe part only so that
``probes=...`` selects it: it fits nothing on the features.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.sources.base import IMAGE_FOLDER, DataRole, split_dir
from trainables.probes.base import PROBES, Probe

METRIC = "analysis/first_layer_alignment"
SAMPLE_SEED = 0  # one sample of images for every trial, so trials compare on the same patches


@PROBES.register
@dataclass(frozen=True)
class AlignmentProbe(Probe):
    name: ClassVar[str] = "alignment"
    roles: ClassVar[dict[str, DataRole]] = {"pretrain": DataRole(IMAGE_FOLDER, "synthetic-objects", ("train",))}
    max_images: int = 128  # at 32 px and conv1's 7 x 7 stride 2: 256 patches an image

    def problems(self, trial: Any) -> list[str]:
        return [] if self.max_images >= 2 else [f"max_images={self.max_images} must be at least 2"]

    def sample(self, root: Path, transform: Any):
        """The fixed sample of ``root``'s ``train/`` images, transformed, as one N x C x H x W
        tensor (unreadable files left out)."""
        import numpy as np
        import torch

        from datasets.image_folder import ImageFolderDataset

        dataset = ImageFolderDataset(split_dir(root, "train"), transform=transform)
        chosen = np.random.default_rng(SAMPLE_SEED).permutation(len(dataset))[:self.max_images]
        items = [dataset[int(i)] for i in sorted(chosen)]
        return torch.stack([image for image, _ in filter(None, items)])

    def evaluate(self, root: Path, features: Any, trial: Any) -> dict[str, float]:
        from trainables.alignment import first_conv, first_layer_alignment

        if first_conv(features.backbone) is None:
            return {}
        return {METRIC: first_layer_alignment(features.backbone, self.sample(root, features.transform))}
