"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations"): two views of each image, an encoder f and a projection head g, and
NT-Xent (Eq. 1) over the global batch: each view's positive is the other view of its
image, its negatives the 2(N - 1) other views of the batch on every worker (no queue,
no momentum encoder).

The views are MoCo v2's augmentation (``trainables.augment``, the paper's cropping knob
included), so SimCLR and MoCo differ here only in the objective. g is the one-hidden-layer
MLP of Sec. 2.1 (SimCLR v1; ``trainables.models.mlp_head``). The embeddings of every worker
are gathered with their gradients (``distributed.gather_with_grad``). Both views pass the
encoder as one batch per worker, so batch norm sees both (SimCLR's global BN would
normalise over all workers; with one worker it is the same).

With ``adversarial_weight`` > 0 (adversarial contrastive examples, ``trainables.adversarial``)
the first view's FGSM version replaces it in a second NT-Xent batch: the encoder embeds it
with the clean second views as one batch again, so the adversarial loss is the clean loss's
function (batch norm included) at the perturbed input, which FGSM raises to first order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from datasets.sources.base import IMAGE_FOLDER, DataRole
from trainables import distributed
from trainables.adversarial import adversarial_problems, combined_loss, fgsm_view
from trainables.augment import crop_scale_problem
from trainables.losses import nt_xent
from trainables.methods.base import METHODS, Method, StepOutput
from trainables.methods.mocov2 import two_view_dataset
from trainables.models import Encoder
from trainables.optim import exclude_bias_and_norm


class SimCLRModel(nn.Module):
    """f (the evaluated backbone) followed by g; the forward embeds both views."""

    def __init__(self, arch: str, dim: int):
        super().__init__()
        self.encoder = Encoder(arch, dim)

    @property
    def backbone(self) -> nn.Module:
        return self.encoder.backbone

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        """The L2-normalised z of both views (fp32: the logits are cosines over tau)."""
        z = F.normalize(self.encoder(torch.cat([x1, x2])).float(), dim=1)
        return z[: x1.shape[0]], z[x1.shape[0]:]


def global_nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent of this worker's views against the views of the whole global batch.

    The keys are [z1 of every worker; z2 of every worker], so this worker's image i sits
    at row start + i of the first half and N + start + i of the second.
    """
    z1_all, sizes = distributed.gather_with_grad(z1)
    z2_all, _ = distributed.gather_with_grad(z2)
    total, start = z1_all.shape[0], sum(sizes[: distributed.rank()])
    own = torch.arange(start, start + z1.shape[0], device=z1.device)
    return nt_xent(torch.cat([z1, z2]), torch.cat([z1_all, z2_all]),
                   positive_index=torch.cat([own + total, own]), self_index=torch.cat([own, own + total]),
                   temperature=temperature)


@METHODS.register
@dataclass(frozen=True)
class SimCLR(Method):
    """``method=simclr``: SimCLR on the ``train/`` split of an image-folder role ``pretrain``."""

    name: ClassVar[str] = "simclr"
    roles: ClassVar[dict[str, DataRole]] = {"pretrain": DataRole(IMAGE_FOLDER, "synthetic-objects", ("train",))}
    dim: int = 128  # output width of g (SimCLR's 128)
    temperature: float = 0.1  # tau of Eq. 1
    crop_scale_min: float = 0.2  # as MoCo v2's, the paper's cropping knob
    crop_scale_max: float = 1.0
    # Adversarial contrastive examples (trainables.adversarial): alpha of the FGSM view's loss (0: off)
    adversarial_weight: float = 0.0
    adversarial_epsilon: float = 0.03  # its FGSM step in pixel units (images in [0, 1])

    def problems(self, trial: Any) -> list[str]:
        out = [f"dim={self.dim} must be at least 1"] if self.dim < 1 else []
        if self.temperature <= 0:
            out.append(f"temperature={self.temperature} must be positive")
        crop = crop_scale_problem(self.crop_scale_min, self.crop_scale_max)
        return out + ([crop] if crop else []) + adversarial_problems(self.adversarial_weight, self.adversarial_epsilon)

    def build_model(self, trial: Any) -> SimCLRModel:
        return SimCLRModel(trial.arch, self.dim)

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        return two_view_dataset(roots["pretrain"], int(trial.image_size), (self.crop_scale_min, self.crop_scale_max))

    def parameter_groups(self, model: nn.Module, trial: Any) -> list[dict]:
        return exclude_bias_and_norm(model)  # no decay, no LARS adaptation for biases and BN

    def training_step(self, model: nn.Module, inputs: Any, labels: Tensor) -> StepOutput:
        x1, x2 = inputs
        adversarial = self.adversarial_weight > 0
        if adversarial:  # FGSM needs the loss's gradient with respect to the first views
            x1 = x1.detach().requires_grad_(True)
        z1, z2 = model(x1, x2)
        with torch.autocast(device_type=z1.device.type, enabled=False):
            loss = global_nt_xent(z1, z2, self.temperature)
        metrics = {"positive_similarity": (z1 * z2).sum(1).mean().detach()}
        if adversarial:
            # The unwrapped module (one DDP forward per step); DDP syncs at the combined loss's backward.
            z1_adv, z2_adv = getattr(model, "module", model)(fgsm_view(loss, x1, self.adversarial_epsilon), x2)
            with torch.autocast(device_type=z1.device.type, enabled=False):
                adversarial_loss = global_nt_xent(z1_adv, z2_adv, self.temperature)
            loss = combined_loss(loss, adversarial_loss, self.adversarial_weight)
            metrics["adversarial_loss"] = adversarial_loss.detach()
        return StepOutput(loss, metrics)
