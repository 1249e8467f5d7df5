"""The fine-tuning probe: the trial's pretrained backbone, every weight trainable, with a
linear head, trained end to end on N labelled images per class (Cole et al. 2022, Sec. 4.1,
"fine-tuning" beside the linear probe), for each N of a list: the label-efficiency curve of
fine-tuning. The labelled images are the linear probe's (`nested_per_class`, nested and
fixed by `label_subset_seed`), so the two curves are read on the same labels.

Unlike the other probes it needs the network, not its frozen features: it trains a copy of
the evaluated trunk (`features.trunk_copy()`, which both extraction paths give), so the
features of the trial's other probes, and their cache, are untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from datasets.sources.base import IMAGE_FOLDER, DataRole, split_dir
from datasets.subsets import nested_per_class
from trainables.probes.base import PROBES, Probe
from trainables.probes.linear import labelled_per_class, parse_per_class


@dataclass(frozen=True)
class FinetuneSettings:
    """How the classifier is trained: SGD with momentum on a cosine schedule."""

    epochs: int = 10
    batch_size: int = 32
    head_lr: float = 0.1
    backbone_lr: float = 0.01  # 0: the backbone frozen (eval mode, BN statistics too)
    momentum: float = 0.9
    weight_decay: float = 1e-4


def finetune_classifier(trunk: nn.Module, train: Dataset, num_classes: int, width: int,
                        settings: FinetuneSettings, seed: int, device: torch.device | str = "cpu") -> nn.Sequential:
    """`trunk` (image -> `width` features) followed by a linear head to `num_classes`,
    trained on `train` (items ``(image, label)`` already augmented, or None for an
    unreadable image, dropped from its batch), and returned in eval mode.

    The head starts at zero (softmax regression is convex in it: any start reaches the same
    optimum, and zero needs no random draw). Batches are reshuffled every epoch; the last,
    incomplete batch of an epoch is dropped when there is a full one (a batch of one image
    has no BN statistics at 1 x 1 spatial maps). Both learning rates follow one cosine
    schedule over every step to 0 (Loshchilov & Hutter 2017, SGDR, Eq. 5, without
    restarts: torch's `CosineAnnealingLR`). `backbone_lr=0` freezes the trunk, BN statistics
    included: the head is then trained on fixed features. Every random draw (batch order,
    augmentation) comes from `seed`; the caller's random state is left as it was.
    """
    from datasets.image_folder import collate_skip_corrupt

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the augmentation's draws (torchvision takes torch's global generator)
        head = nn.Linear(width, num_classes)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        model = nn.Sequential(trunk, head).to(device)
        frozen = settings.backbone_lr == 0
        trunk.requires_grad_(not frozen)
        groups = [{"params": head.parameters(), "lr": settings.head_lr}]
        if not frozen:
            groups.append({"params": trunk.parameters(), "lr": settings.backbone_lr})
        optimizer = torch.optim.SGD(groups, momentum=settings.momentum, weight_decay=settings.weight_decay)
        drop_last = len(train) > settings.batch_size
        steps_per_epoch = len(train) // settings.batch_size if drop_last else 1
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs * steps_per_epoch)
        loader = DataLoader(train, batch_size=settings.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed), drop_last=drop_last,
                            collate_fn=collate_skip_corrupt)
        for _ in range(settings.epochs):
            model.train()
            if frozen:
                trunk.eval()
            for images, labels, _ in loader:
                if len(labels):
                    loss = nn.functional.cross_entropy(model(images.to(device)), labels.to(device))
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                schedule.step()
    return model.eval()


def top1(model: nn.Module, val: Dataset, batch_size: int, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy (percent) of `model` (image -> class scores) on `val`, in eval mode
    (each image's prediction its own, whatever the batch); unreadable images are left out."""
    from trainables.features import extract_features

    scores, labels, _ = extract_features(model, val, batch_size, device)
    return float(100.0 * np.mean(scores.argmax(axis=1) == labels))


def pooled_width(trunk: nn.Module, image_size: int) -> int:
    """The width of `trunk`'s output on `image_size` images (one forward pass in eval mode,
    which changes no BN statistic)."""
    was_training = trunk.training
    with torch.inference_mode():
        width = int(trunk.eval()(torch.zeros(1, 3, image_size, image_size)).shape[1])
    trunk.train(was_training)
    return width


@PROBES.register
@dataclass(frozen=True)
class FinetuneProbe(Probe):
    """``probe/finetune_top1_at_<N>``: for each N of ``labels_per_class``, the trial's
    backbone with a linear head fine-tuned end to end on N of the role's ``train/`` images
    per class (the linear probe's labelled subsets), under torchvision's standard training
    augmentation, and scored on ``val/`` (`finetune_classifier`, `top1`). The defaults fit
    2 CPUs at 32 px (about a second per epoch of 200 images for a ResNet-18)."""

    name: ClassVar[str] = "finetune"
    roles: ClassVar[dict[str, DataRole]] = {"probe": DataRole(IMAGE_FOLDER, "synthetic-objects", ("train", "val"))}
    labels_per_class: str = "5,25"
    label_subset_seed: int = 0
    epochs: int = FinetuneSettings.epochs
    batch_size: int = FinetuneSettings.batch_size
    head_lr: float = FinetuneSettings.head_lr
    backbone_lr: float = FinetuneSettings.backbone_lr
    momentum: float = FinetuneSettings.momentum
    weight_decay: float = FinetuneSettings.weight_decay

    def training_settings(self) -> FinetuneSettings:
        return FinetuneSettings(self.epochs, self.batch_size, self.head_lr, self.backbone_lr, self.momentum,
                                self.weight_decay)

    def problems(self, trial: Any) -> list[str]:
        out = []
        try:
            if not parse_per_class(self.labels_per_class):
                out.append(f"labels_per_class={self.labels_per_class!r} must list at least one count "
                           "(the probe reports one metric per count)")
        except ValueError as err:
            out.append(str(err))
        checks = (("label_subset_seed", self.label_subset_seed >= 0, "must be at least 0"),
                  ("epochs", self.epochs >= 1, "must be at least 1"),
                  ("batch_size", self.batch_size >= 2, "must be at least 2 (BN needs two images a batch)"),
                  ("head_lr", self.head_lr > 0, "must be above 0"),
                  ("backbone_lr", self.backbone_lr >= 0, "must be at least 0 (0 freezes the backbone)"),
                  ("momentum", 0 <= self.momentum < 1, "must be in [0, 1)"),
                  ("weight_decay", self.weight_decay >= 0, "must be at least 0"))
        return out + [f"{key}={getattr(self, key)} {why}" for key, ok, why in checks if not ok]

    def read(self, root: Path, trial: Any) -> dict[str, int]:
        """Training images per class (`labelled_per_class`): a class with fewer than the
        largest N is refused before any trial."""
        return labelled_per_class(root, self.labels_per_class)

    def evaluate(self, root: Path, features: Any, trial: Any) -> dict[str, float]:
        from datasets.image_folder import ImageFolderDataset
        from trainables.augment import finetune_transform

        image_size = int(trial.image_size)
        train = ImageFolderDataset(split_dir(root, "train"), transform=finetune_transform(image_size))
        val = ImageFolderDataset(split_dir(root, "val"), transform=features.transform)
        num_classes = len(train.classes)
        out = {}
        for n in parse_per_class(self.labels_per_class):
            rows = nested_per_class(np.asarray(train.labels), n, self.label_subset_seed)
            trunk = features.trunk_copy()
            model = finetune_classifier(trunk, Subset(train, rows.tolist()), num_classes,
                                        pooled_width(trunk, image_size), self.training_settings(),
                                        seed=int(trial.seed), device=features.device)
            out[f"probe/finetune_top1_at_{n}"] = top1(model, val, int(trial.eval_batch_size), features.device)
        return out
