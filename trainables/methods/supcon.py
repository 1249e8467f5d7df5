"""Supervised contrastive learning, SupCon (Khosla et al. 2020, "Supervised Contrastive
Learning", NeurIPS 2020).

Two random views of each image go through one encoder (trunk and projection head); each
L2-normalised embedding is an anchor whose positives are every other embedding of its
class in the batch (the other view of its own image included) and whose denominator runs
over every other embedding. The labels are the ``train/<class>/`` folders of the
``pretrain`` role, as for ``method=supervised``.

The paper compares two places for the 1/|P(i)| average over positives: outside the log,
``L_out`` (its Eq. 2), and inside, ``L_in`` (its Eq. 3). ``method.variant`` picks one;
the paper reports ``L_out`` far ahead (ImageNet top-1 78.7 % against 67.4 %, its Table 1)
and makes it the default. By Jensen's inequality (-log is convex) ``L_in <= L_out`` for
the same embeddings.

Batch: the loss is taken over each worker's own batch (its two views), not the global
batch: the project's all-gather carries no gradient yet, so with several workers each
anchor meets only its worker's images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from datasets.sources.base import IMAGE_FOLDER, DataRole, split_dir
from trainables.augment import TwoCropsTransform, crop_scale_problem, mocov2_transform
from trainables.methods.base import METHODS, Method
from trainables.models import Encoder

VARIANTS = ("out", "in")


def supcon_loss(z: Tensor, labels: Tensor, temperature: float, variant: str = "out") -> Tensor:
    """The SupCon loss of L2-normalised embeddings `z` (M x C) with class `labels` (M,).

    With A(i) all indices but i and P(i) = {p in A(i): labels[p] == labels[i]}, anchor i
    scores its positives by log softmax over A(i) of z_i . z_a / tau, and
    ``variant="out"`` (SupCon Eq. 2) takes
        L_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) ),
    ``variant="in"`` (SupCon Eq. 3)
        L_i = -log( 1/|P(i)| sum_{p in P(i)} exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) ).
    Returns the mean of L_i over the M anchors (the paper sums; the mean keeps the step
    size independent of the batch). Every anchor needs a positive, which a batch of two
    views of each image guarantees (the other view).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not one of {', '.join(VARIANTS)}")
    if z.shape[0] != labels.shape[0]:
        raise ValueError(f"{z.shape[0]} embeddings but {labels.shape[0]} labels")
    self_mask = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    num_positives = positives.sum(1)
    if not bool((num_positives > 0).all()):
        raise ValueError("an anchor has no positive: give each image two views")
    logits = (z @ z.T / temperature).masked_fill(self_mask, -math.inf)  # a = i is not in A(i)
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    if variant == "out":
        per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(1) / num_positives
    else:
        per_anchor = -(log_prob.masked_fill(~positives, -math.inf).logsumexp(1) - num_positives.log())
    return per_anchor.mean()


@METHODS.register
@dataclass(frozen=True)
class SupCon(Method):
    """``method=supcon``: SupCon on the ``train/<class>/`` split of an image-folder role ``pretrain``."""

    name: ClassVar[str] = "supcon"
    roles: ClassVar[dict[str, DataRole]] = {"pretrain": DataRole(IMAGE_FOLDER, "synthetic-objects", ("train",))}
    variant: str = "out"  # "out": SupCon Eq. 2 (the paper's choice); "in": Eq. 3
    dim: int = 128  # output width of the projection head (SupCon: 128)
    temperature: float = 0.1  # tau (SupCon: 0.1)
    crop_scale_min: float = 0.2  # RandomResizedCrop's area range, as MoCo v2's views
    crop_scale_max: float = 1.0

    def problems(self, trial: Any) -> list[str]:
        out = []
        if self.variant not in VARIANTS:
            out.append(f"variant={self.variant!r} is not a SupCon loss: 'out' (1/|P(i)| outside "
                       "the log, SupCon Eq. 2) or 'in' (inside the log, Eq. 3)")
        if self.dim < 1:
            out.append(f"dim={self.dim} must be at least 1")
        if self.temperature <= 0:
            out.append(f"temperature={self.temperature} must be positive")
        crop = crop_scale_problem(self.crop_scale_min, self.crop_scale_max)
        return out + ([crop] if crop else [])

    def build_model(self, trial: Any) -> Encoder:
        return Encoder(trial.arch, self.dim)

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        from datasets.image_folder import ImageFolderDataset

        view = mocov2_transform(int(trial.image_size), (self.crop_scale_min, self.crop_scale_max))
        return ImageFolderDataset(split_dir(roots["pretrain"], "train"), transform=TwoCropsTransform(view))

    def training_step(self, model: nn.Module, inputs: Any, labels: Tensor) -> Tensor:
        first, second = inputs
        # One forward over both views: batch norm sees all 2N images, as in SupCon's code.
        z = F.normalize(model(torch.cat([first, second])).float(), dim=1)
        with torch.autocast(device_type=z.device.type, enabled=False):  # logits in fp32
            return supcon_loss(z, labels.repeat(2), self.temperature, self.variant)
