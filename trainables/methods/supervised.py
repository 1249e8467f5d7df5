"""The supervised reference (the paper's "Sup. R50" rows of Tables 1 and 2): a ResNet
trained with labels, cross-entropy over the class folders of the ``pretrain`` role, with
the standard ImageNet augmentation (random resized crop and horizontal flip; He et al.
2016). Same Ray Train path, checkpoints and evaluation as the contrastive methods, so
its RIS and probes sit beside theirs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

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
        from datasets.image_folder import class_names

        classes = class_names(split_dir(trial.root("pretrain"), "train"))
        return Classifier(trial.arch, len(classes))

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
