"""The supervised reference (the paper's "Sup. R50" rows of Tables 1 and 2): a ResNet
trained with labels, cross-entropy over the class folders of the ``pretrain`` role, with
the standard ImageNet augmentation (random resized crop and horizontal flip; He et al.
2016). Same Ray Train path, checkpoints and evaluation as the contrastive methods, so
its RIS and probes sit beside theirs.

``method=supervised_random_labels`` is the same training on shuffled labels (Zhang et al.
2017, "Understanding deep learning requires rethinking generalization"; Maennel et al.
2020, "What Do Neural Networks Learn When Trained With Random Labels?", in the notes of
``../shared/reference/seeds/002``): the images' label vector permuted once, by the trial's
seed, so each image keeps its one wrong label every epoch (the net can only memorise), and
the classes keep their sizes. What such a net learns anyway is the first layer's alignment
with the data (``trainables.alignment``, the ``alignment`` probe).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from datasets.sources.base import IMAGE_FOLDER, DataRole, split_dir
from trainables.augment import IMAGENET_MEAN, IMAGENET_STD, crop_scale_problem
from trainables.methods.base import METHODS, Method
from trainables.models import resnet_backbone


class Classifier(nn.Module):
    """Backbone (the evaluated trunk) followed by a linear classifier."""

    def __init__(self, arch: str, num_classes: int):
        super().__init__()
        self.backbone, width = resnet_backbone(arch)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.backbone(x))


@METHODS.register
@dataclass(frozen=True)
class Supervised(Method):
    """``method=supervised``: labels from the ``train/<class>/`` folders of ``pretrain``."""

    name: ClassVar[str] = "supervised"
    roles: ClassVar[dict[str, DataRole]] = {"pretrain": DataRole(IMAGE_FOLDER, "synthetic-objects", ("train",))}
    crop_scale_min: float = 0.08  # torchvision's ImageNet recipe
    crop_scale_max: float = 1.0
    label_smoothing: float = 0.0

    def problems(self, trial: Any) -> list[str]:
        out = [crop] if (crop := crop_scale_problem(self.crop_scale_min, self.crop_scale_max)) else []
        if not 0.0 <= self.label_smoothing < 1.0:
            out.append(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        return out

    def build_model(self, trial: Any) -> Classifier:
        return Classifier(trial.arch, self.classes(trial))

    def classes(self, trial: Any) -> int:
        """C, the classes of the pretraining root's train split (the class folders)."""
        from datasets.image_folder import class_names

        return len(class_names(split_dir(trial.root("pretrain"), "train")))

    def prepare(self, trial: Any) -> dict[str, float]:
        # The chance loss of its cross-entropy is ln(C): a study's gate reads C from here
        # (orchestrator.study.CLASSES), whatever root or generator the classes came from.
        return {"data/pretrain_classes": float(self.classes(trial))}

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        from datasets.image_folder import ImageFolderDataset

        view = v2.Compose([
            v2.RandomResizedCrop(int(trial.image_size), scale=(self.crop_scale_min, self.crop_scale_max), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])
        return ImageFolderDataset(split_dir(roots["pretrain"], "train"), transform=view)

    def training_step(self, model: nn.Module, inputs: Any, labels: Tensor) -> Tensor:
        return F.cross_entropy(model(inputs), labels, label_smoothing=self.label_smoothing)


def shuffled_labels(labels: list[int], seed: int) -> list[int]:
    """`labels` (one per image) permuted by one permutation drawn from `seed`: item i gets
    the label of item perm[i]."""
    order = np.random.default_rng(seed).permutation(len(labels))
    return [labels[i] for i in order]


@METHODS.register
@dataclass(frozen=True)
class SupervisedRandomLabels(Supervised):
    """``method=supervised_random_labels``: ``supervised`` on labels shuffled once per run.

    The permutation is drawn from the trial's seed when the dataset is built, so every Train
    worker, every epoch and a resumed run see the same wrong label for an image.
    """

    name: ClassVar[str] = "supervised_random_labels"

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        dataset = super().train_dataset(roots, trial)
        dataset.labels = shuffled_labels(dataset.labels, int(trial.seed))
        return dataset
