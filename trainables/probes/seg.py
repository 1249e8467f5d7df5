"""The segmentation probe (paper Table 3's ADE20K columns): a small head on frozen feature maps.

``seg`` (``probe/seg_miou``, ``probe/seg_pixel_acc``): the backbone's ``layer2``,
``layer3`` and ``layer4`` maps (frozen, extracted once per image at ``input_size`` x
``input_size``; strides 8, 16, 32), the coarser two upsampled to ``layer2``'s grid and
concatenated (a hypercolumn), then a head of two 1x1
convolutions (with BN and ReLU between) whose class logits are upsampled bilinearly to
the input size; trained with pixel-wise cross-entropy (Adam) on the ``training`` masks and
scored on the ``validation`` masks (resized with nearest-neighbour to the input size).
Mask index 0 ("other objects") is ignored in training and scoring, as in ADE20K's
benchmark; class k is logit k - 1. mIoU is the mean IoU over the classes present in the
ground truth or the predictions of the validation set; pixel accuracy is over the
labelled pixels. ADE20K's own score is their mean.

The paper fine-tunes a full segmentation network; a frozen backbone with a light head
is the probe's version of it (it scores the representation, not the head), and keeps
the probe affordable inside every trial. Reads the data role ``ade20k``
(``data.ade20k=ade20k``, ``data.ade20k.root=/data/ADEChallengeData2016``; by default the
synthetic scenes' masks). ``data/seg_skipped`` counts the image/mask pairs left out
(no mask, mask of another size, unreadable).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datasets.sources.base import ADE20K, DataRole
from datasets.registry import ReportColumn
from trainables.probes.base import PROBES, Probe

LAYERS = ("layer2", "layer3", "layer4")


class SegmentationHead(nn.Module):
    """Frozen maps, finest first -> per-pixel class logits at `output_size`."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width),
                                 nn.ReLU(inplace=True), nn.Conv2d(width, num_classes, 1))

    def forward(self, maps: list[torch.Tensor], output_size: int) -> torch.Tensor:
        grid = maps[0].shape[-2:]
        logits = self.net(torch.cat([maps[0]] + [F.interpolate(m, size=grid, mode="bilinear", align_corners=False)
                                                 for m in maps[1:]], dim=1))
        return F.interpolate(logits, size=(output_size, output_size), mode="bilinear", align_corners=False)


def load_pairs(images: list[Path], masks: list[Path], size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Images (normalised, N x 3 x size x size) and masks (N x size x size, int64 with 0 -> -1,
    k -> k - 1); pairs whose image cannot be decoded are left out and counted."""
    from torchvision.transforms import v2

    from datasets.ade20k import load_mask
    from datasets.image_folder import load_rgb
    from trainables.augment import IMAGENET_MEAN, IMAGENET_STD

    view = v2.Compose([v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    xs, ys, skipped = [], [], 0
    for image_path, mask_path in zip(images, masks):
        image = load_rgb(image_path)
        if image is None:
            skipped += 1
            continue
        mask = torch.from_numpy(load_mask(mask_path).astype(np.int64))[None, None].float()
        xs.append(view(image))
        ys.append(F.interpolate(mask, size=(size, size), mode="nearest")[0, 0].long() - 1)
    if not xs:
        raise ValueError(f"none of the {len(images)} segmentation images could be decoded")
    return torch.stack(xs), torch.stack(ys), skipped


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """K x K counts (rows: truth, columns: prediction) over pixels whose truth is labelled (>= 0)."""
    keep = target >= 0
    index = target[keep] * num_classes + pred[keep]
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes).numpy()


def segmentation_scores(counts: np.ndarray) -> tuple[float, float]:
    """(mIoU, pixel accuracy), in percent, from a confusion matrix; IoU_k = TP / (TP + FP + FN)
    over the classes with a non-empty union."""
    counts = counts.astype(np.float64)
    tp = np.diag(counts)
    union = counts.sum(0) + counts.sum(1) - tp
    iou = tp[union > 0] / union[union > 0]
    return float(100 * iou.mean()), float(100 * tp.sum() / max(counts.sum(), 1.0))


def train_and_score_head(train_maps: list[torch.Tensor], train_masks: torch.Tensor, val_maps: list[torch.Tensor],
                         val_masks: torch.Tensor, num_classes: int, epochs: int, lr: float, batch_size: int,
                         seed: int, device: torch.device | str = "cpu") -> tuple[float, float]:
    """Fit a :class:`SegmentationHead` for `epochs` (0: left at its random initialisation) and
    return its (mIoU, pixel accuracy) on the validation maps and masks."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = SegmentationHead(sum(m.shape[1] for m in train_maps), num_classes).to(device)
    size = train_masks.shape[-1]
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    head.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(train_masks), generator=generator).split(batch_size):
            logits = head([m[batch].to(device) for m in train_maps], size)
            loss = F.cross_entropy(logits, train_masks[batch].to(device), ignore_index=-1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    head.eval()
    counts = np.zeros((num_classes, num_classes), np.int64)
    with torch.inference_mode():
        for batch in torch.arange(len(val_masks)).split(batch_size):
            logits = head([m[batch].to(device) for m in val_maps], size)
            counts += confusion(logits.argmax(1).cpu(), val_masks[batch], num_classes)
    return segmentation_scores(counts)


@PROBES.register
@dataclass(frozen=True)
class SegmentationProbe(Probe):
    """``probe/seg_miou`` and ``probe/seg_pixel_acc`` on ADE20K-layout masks."""

    name: ClassVar[str] = "seg"
    columns: ClassVar[tuple[ReportColumn, ...]] = (ReportColumn(("probe/seg_miou",), "seg mIoU", "seg miou"),
                                                   ReportColumn(("probe/seg_pixel_acc",), "seg pixel acc.", "seg acc"))
    roles: ClassVar[dict[str, DataRole]] = {"ade20k": DataRole(ADE20K, "synthetic-ade20k", ("training", "validation"))}
    input_size: int = 128  # images and masks are resized to this square
    epochs: int = 30
    lr: float = 0.003
    batch_size: int = 32
    max_train_images: int = 2000  # 0 = all: the frozen maps of every training image stay in memory
    max_val_images: int = 0  # 0 = all

    def problems(self, trial: Any) -> list[str]:
        out = [f"{k}={getattr(self, k)} must be at least 1" for k in ("epochs", "batch_size") if getattr(self, k) < 1]
        if self.input_size < 32:
            out.append(f"input_size={self.input_size} must be at least 32 (a ResNet's layer4 is 1/32 of it)")
        if self.lr <= 0:
            out.append(f"lr={self.lr} must be positive")
        out += [f"{k}={getattr(self, k)} must be >= 0 (0 = all)" for k in ("max_train_images", "max_val_images")
                if getattr(self, k) < 0]
        return out

    def read(self, root: Path, trial: Any):
        """Both splits' listings of image and mask pairs, and the class list."""
        from datasets.ade20k import read_ade20k

        return read_ade20k(root, "training"), read_ade20k(root, "validation")

    def evaluate(self, root: Path, features: Any, trial: Any) -> dict[str, float]:
        from datasets.errors import DatasetFormatError
        from trainables.features import extract_feature_maps

        train, val = self.read(root, trial)
        train_images, train_masks = _subset(train.images, train.masks, self.max_train_images)
        val_images, val_masks = _subset(val.images, val.masks, self.max_val_images)
        x_train, y_train, bad_train = load_pairs(train_images, train_masks, self.input_size)
        x_val, y_val, bad_val = load_pairs(val_images, val_masks, self.input_size)
        if train.class_names:
            num_classes = len(train.class_names)
        else:  # no objectInfo150.txt: the largest index in the masks
            num_classes = int(max(y_train.max(), y_val.max())) + 1
        if max(int(y_train.max()), int(y_val.max())) >= num_classes:
            raise DatasetFormatError(f"{root}: a mask holds a class index above the {num_classes} classes of "
                                     "objectInfo150.txt")
        device = "cuda" if trial.use_gpu and torch.cuda.is_available() else "cpu"
        backbone = features.backbone
        train_maps = extract_feature_maps(backbone, x_train, LAYERS, int(trial.eval_batch_size), device)
        val_maps = extract_feature_maps(backbone, x_val, LAYERS, int(trial.eval_batch_size), device)
        miou, accuracy = train_and_score_head(train_maps, y_train, val_maps, y_val, num_classes, self.epochs,
                                              self.lr, self.batch_size, int(trial.seed), device)
        skipped = sum(train.skipped.values()) + sum(val.skipped.values()) + bad_train + bad_val
        return {"probe/seg_miou": miou, "probe/seg_pixel_acc": accuracy, "data/seg_skipped": skipped}


def _subset(images: list[Path], masks: list[Path], limit: int) -> tuple[list[Path], list[Path]]:
    """At most `limit` pairs (0: all), evenly spaced over the sorted listing."""
    if limit <= 0 or limit >= len(images):
        return images, masks
    keep = np.linspace(0, len(images) - 1, limit).round().astype(int)
    return [images[k] for k in keep], [masks[k] for k in keep]
