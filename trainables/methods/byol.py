"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent"): an online network (encoder,
projector, predictor) learns to predict a target network's projection of another view of
the same image; the target is an exponential moving average of the online encoder and
projector (Sec. 3.1), its rate tau rising to 1 on a cosine over training (Sec. 3.3). No
negatives: the loss is the normalised MSE of Eq. 2, symmetrised over the two views.

The views are MoCo v2's augmentation (``trainables.augment``), as for MoCo and SimCLR
here, so the methods differ in the objective only. The projector and predictor are the
paper's MLPs (Sec. 3.3: Linear, batch norm, ReLU, Linear; 4096 hidden, 256 out).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from datasets.sources.base import IMAGE_FOLDER, DataRole
from trainables.augment import crop_scale_problem
from trainables.methods.base import METHODS, Method, StepOutput
from trainables.methods.mocov2 import two_view_dataset
from trainables.models import resnet_backbone
from trainables.momentum import byol_tau, ema_update
from trainables.optim import exclude_bias_and_norm


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL Eq. 2, averaged over the batch: ||p/||p|| - z/||z|| ||^2 = 2 - 2 cos(p, z), the
    online prediction `p` against the target projection `z` of the other view (no
    gradient into `z`: the stop-gradient of Sec. 3.1)."""
    return (F.normalize(p, dim=1) - F.normalize(z.detach(), dim=1)).pow(2).sum(1).mean()


def byol_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """BYOL's projector and predictor (Sec. 3.3): Linear - BatchNorm - ReLU - Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))


class BYOLOutput(NamedTuple):
    loss: Tensor
    similarity: Tensor  # mean cosine of the predictions and the other view's target projections
    target_tau: Tensor  # the rate of the latest target update (tau_base before the first)


class BYOLModel(nn.Module):
    """Online network (backbone, projector; predictor) and its EMA target (backbone, projector)."""

    def __init__(self, arch: str, dim: int, hidden_dim: int, tau_base: float):
        super().__init__()
        backbone, width = resnet_backbone(arch)
        self.online = nn.Sequential(backbone, byol_mlp(width, hidden_dim, dim))
        self.predictor = byol_mlp(dim, hidden_dim, dim)
        self.target = copy.deepcopy(self.online)  # starts equal to the online network
        self.target.requires_grad_(False)  # moved only by update_target
        self.register_buffer("target_tau", torch.tensor(float(tau_base)))

    @property
    def backbone(self) -> nn.Module:
        """The online encoder: the representation that is evaluated (BYOL Sec. 3.1)."""
        return self.online[0]

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """xi <- tau xi + (1 - tau) theta (Sec. 3.1), for the target's encoder and projector."""
        ema_update(self.target, self.online, tau)
        self.target_tau.fill_(tau)

    def forward(self, x1: Tensor, x2: Tensor) -> BYOLOutput:
        p1, p2 = self.predictor(self.online(x1)).float(), self.predictor(self.online(x2)).float()
        with torch.no_grad():
            z1, z2 = self.target(x1).float(), self.target(x2).float()
        with torch.autocast(device_type=p1.device.type, enabled=False):
            # The symmetrised loss: each view's prediction of the other view's target.
            loss = byol_loss(p1, z2) + byol_loss(p2, z1)
        similarity = (F.cosine_similarity(p1, z2, dim=1).mean() + F.cosine_similarity(p2, z1, dim=1).mean()) / 2
        return BYOLOutput(loss, similarity.detach(), self.target_tau.clone())


@METHODS.register
@dataclass(frozen=True)
class BYOL(Method):
    """``method=byol``: BYOL on the ``train/`` split of an image-folder role ``pretrain``."""

    name: ClassVar[str] = "byol"
    roles: ClassVar[dict[str, DataRole]] = {"pretrain": DataRole(IMAGE_FOLDER, "synthetic-objects", ("train",))}
    dim: int = 256  # projection (and prediction) width
    hidden_dim: int = 4096  # the MLPs' hidden width
    tau_base: float = 0.996  # the target's EMA rate at step 0, rising to 1 (Sec. 3.3)
    crop_scale_min: float = 0.2  # as MoCo v2's, the paper's cropping knob
    crop_scale_max: float = 1.0

    def problems(self, trial: Any) -> list[str]:
        out = [f"{key}={value} must be at least 1" for key, value in (("dim", self.dim), ("hidden_dim", self.hidden_dim))
               if value < 1]
        if not 0.0 <= self.tau_base <= 1.0:
            out.append(f"tau_base={self.tau_base} must be in [0, 1]")
        if int(trial.batch_size) // max(1, int(trial.num_workers)) < 2:
            out.append(f"projector: its batch norm needs at least 2 images per worker; batch_size="
                       f"{trial.batch_size} over num_workers={trial.num_workers} gives fewer")
        crop = crop_scale_problem(self.crop_scale_min, self.crop_scale_max)
        return out + ([crop] if crop else [])

    def build_model(self, trial: Any) -> BYOLModel:
        return BYOLModel(trial.arch, self.dim, self.hidden_dim, self.tau_base)

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        return two_view_dataset(roots["pretrain"], int(trial.image_size), (self.crop_scale_min, self.crop_scale_max))

    def parameter_groups(self, model: nn.Module, trial: Any) -> list[dict]:
        return exclude_bias_and_norm(model)  # Sec. 3.3: no decay, no LARS adaptation for biases and BN

    def training_step(self, model: nn.Module, inputs: Any, labels: Tensor) -> StepOutput:
        x1, x2 = inputs
        out = model(x1, x2)
        return StepOutput(out.loss, {"positive_similarity": out.similarity, "target_tau": out.target_tau})

    def on_step_end(self, model: nn.Module, step: int, total_steps: int) -> None:
        """The target follows the online network at this step's tau (Sec. 3.3's schedule)."""
        model.update_target(byol_tau(step, total_steps, self.tau_base))
