"""Supervised contrastive learning, SupCon (Khosla et al. 2020, "Supervised Contrastive
Learning", NeurIPS 2020).

Two random views of each image go through one encoder (trunk and projection head); each
L2-normalised embedding is an anchor whose positives are every other embedding of its
class in the batch (the other view of its own image included) and whose denominator runs
over every other embedding. The labels are the ``train/<class>/`` folders of the
``pretrain`` role, as for ``method=supervised``.

The paper compares two places for the 1/|P(i)| average over positives: outside the log,
``L_out`` (its Eq. 2), and inside, ``L_in`` (its Eq. 3). ``method.variant`` picks one;
the paper reports ``L_out`` far ahead (ImageNet top-1 78.7 % against 67.4 %, as the
neighbouring-paper notes in ``../shared/reference/seeds/`` quote it), and it is the
default. By Jensen's inequality (-log is convex) ``L_in <= L_out`` for the same
embeddings.

Batch: each worker's anchors (both views of its images) are contrasted with the views of
the whole global batch, gathered with their gradients (``distributed.gather_with_grad``),
as SimCLR's negatives; with one worker that is the batch. Both views pass the encoder as
one batch per worker, so batch norm sees both.
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

from datasets.sources.base import IMAGE_FOLDER, DataRole
from trainables import distributed
from trainables.augment import crop_scale_problem
from trainables.methods.base import METHODS, Method, StepOutput
from trainables.methods.mocov2 import two_view_dataset
from trainables.models import Encoder

VARIANTS = ("out", "in")


def supcon_loss(z: Tensor, labels: Tensor, temperature: float, variant: str = "out",
                anchor_index: Tensor | None = None) -> Tensor:
    """The SupCon loss of L2-normalised embeddings `z` (M x C) with class `labels` (M,).

    With A(i) all indices but i and P(i) = {p in A(i): labels[p] == labels[i]}, anchor i
    scores its positives by log softmax over A(i) of z_i . z_a / tau, and
    ``variant="out"`` (SupCon Eq. 2) takes
        L_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) ),
    ``variant="in"`` (SupCon Eq. 3)
        L_i = -log( 1/|P(i)| sum_{p in P(i)} exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) ).
    Returns the mean of L_i over the anchors: the rows `anchor_index` of `z` (all rows by
    default; one worker's share of a gathered global batch otherwise). The paper sums; the
    mean keeps the step size independent of the batch. Every anchor needs a positive, which
    a batch of two views of each image guarantees (the other view).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not one of {', '.join(VARIANTS)}")
    if z.shape[0] != labels.shape[0]:
        raise ValueError(f"{z.shape[0]} embeddings but {labels.shape[0]} labels")
    if anchor_index is None:
        anchor_index = torch.arange(z.shape[0], device=z.device)
    self_mask = anchor_index[:, None] == torch.arange(z.shape[0], device=z.device)[None, :]
    positives = (labels[anchor_index, None] == labels[None, :]) & ~self_mask
    num_positives = positives.sum(1)
    if not bool((num_positives > 0).all()):
        raise ValueError("an anchor has no positive: give each image two views")
    logits = (z[anchor_index] @ z.T / temperature).masked_fill(self_mask, -math.inf)  # a = i is not in A(i)
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    if variant == "out":
        per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(1) / num_positives
    else:
        per_anchor = -(log_prob.masked_fill(~positives, -math.inf).logsumexp(1) - num_positives.log())
    return per_anchor.mean()


def global_supcon_loss(z1: Tensor, z2: Tensor, labels: Tensor, temperature: float, variant: str) -> Tensor:
    """:func:`supcon_loss` of this worker's two views (anchors) against both views of every
    worker's images: rows [z1 of every worker; z2 of every worker], this worker's image i at
    row start + i of the first half and total + start + i of the second."""
    z1_all, sizes = distributed.gather_with_grad(z1)
    z2_all, _ = distributed.gather_with_grad(z2)
    labels_all, _ = distributed.gather_with_sizes(labels)
    total, start = z1_all.shape[0], sum(sizes[: distributed.rank()])
    own = torch.arange(start, start + z1.shape[0], device=z1.device)
    return supcon_loss(torch.cat([z1_all, z2_all]), labels_all.repeat(2), temperature, variant,
                       anchor_index=torch.cat([own, own + total]))


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
        return two_view_dataset(roots["pretrain"], int(trial.image_size), (self.crop_scale_min, self.crop_scale_max))

    def training_step(self, model: nn.Module, inputs: Any, labels: Tensor) -> StepOutput:
        first, second = inputs
        # One forward over both views: batch norm sees all 2N images, as in SupCon's code.
        z = F.normalize(model(torch.cat([first, second])).float(), dim=1)  # fp32: cosines over tau
        z1, z2 = z[: first.shape[0]], z[first.shape[0]:]
        with torch.autocast(device_type=z.device.type, enabled=False):
            loss = global_supcon_loss(z1, z2, labels, self.temperature, self.variant)
        return StepOutput(loss, {"positive_similarity": (z1 * z2).sum(1).mean().detach()})
