"""PIRL (Misra and van der Maaten 2020, "Self-Supervised Learning of Pretext-Invariant
Representations", CVPR 2020), the paper's Table 1 row beside MoCo.

An image I and its jigsaw transform I^t (a random view cut into a 3 x 3 grid, the
patches shuffled) go through one trunk: the image's pooled features v_I through a linear
head f, each patch's features through a linear layer, the nine concatenated in their
shuffled order and projected by a linear layer, the head g (PIRL's implementation
details). The representations learn to match a memory bank of the images'
representations m_I, an exponential moving average of f(v_I) from earlier visits (PIRL
Sec. 3.2), against negatives drawn from the same bank, with the NCE loss of PIRL Eq. 2-4
mixed over the two heads (Eq. 5):

    L(I, I^t) = lambda * L_NCE(m_I, g(v_I^t)) + (1 - lambda) * L_NCE(m_I, f(v_I)).

Each image needs its index into the bank: the training set's items carry it as the last
of their inputs (:class:`IndexedDataset`).

Not reproduced: PIRL's per-patch crop jitter and colour jitter (here the patches tile
one augmented view exactly); the bank-based negatives are shared by the batch (each
query's own image masked out) rather than drawn per query. Several workers: each draws
its own negatives; every rank writes the whole global batch's f(v_I) into its bank, so
the banks stay identical.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from datasets.sources.base import IMAGE_FOLDER, DataRole, split_dir
from trainables import distributed
from trainables.augment import crop_scale_problem, mocov2_transform
from trainables.methods.base import METHODS, Method, StepOutput
from trainables.models import resnet_backbone

JIGSAW_GRID = 3  # PIRL: 3 x 3 patches, as the jigsaw pretext task (Noroozi and Favaro 2016)


def pirl_nce(query: Tensor, positive: Tensor, negatives: Tensor, temperature: float,
             excluded: Tensor | None = None) -> Tensor:
    """PIRL's NCE loss (Eq. 3, with the memory bank of Eq. 4), averaged over the queries.

    `query` (B x C): the network's L2-normalised representations, g(v_I^t) or f(v_I);
    `positive` (B x C): each query's memory-bank entry m_I; `negatives` (N x C): the bank
    entries m_I' of the set D_N drawn for the batch; `excluded` (B x N, optional): True
    where a negative is the query's own image, left out of that query's D_N. With
    s the cosine similarity and S(q) = sum_{I' in D_N} exp(s(q, m_I')/tau), Eq. 2 gives

        h(q, m) = exp(s(q, m)/tau) / (exp(s(q, m)/tau) + S(q)),
        L_NCE(m_I, q) = -log h(q, m_I) - sum_{I' in D_N} log(1 - h(q, m_I')).

    Eq. 2 prints the sum over D_N against the transformed image's representation; with
    the memory bank that is the query's, in both terms (our reading).
    """
    pos = (query * positive).sum(1, keepdim=True) / temperature  # B x 1
    neg = query @ negatives.T / temperature  # B x N
    if excluded is not None:
        neg = neg.masked_fill(excluded, -math.inf)
    log_noise = neg.logsumexp(1, keepdim=True)  # log S(q)
    log_h_pos = pos - torch.logaddexp(pos, log_noise)
    log_one_minus_h_neg = log_noise - torch.logaddexp(neg, log_noise)  # log(S / (e^s + S))
    if excluded is not None:
        log_one_minus_h_neg = log_one_minus_h_neg.masked_fill(excluded, 0.0)
    return -(log_h_pos.squeeze(1) + log_one_minus_h_neg.sum(1)).mean()


def memory_bank_update(bank: Tensor, index: Tensor, features: Tensor, momentum: float) -> None:
    """PIRL Sec. 3.2: m_I <- normalise(momentum * m_I + (1 - momentum) * f(v_I)), in place.

    The bank is an exponential moving average of each image's f(v_I), L2-normalised as the
    representations it is compared with (Wu et al. 2018's memory bank, which PIRL uses).
    Per bank row, on normalised vectors: not ``trainables.momentum.ema_update``'s
    parameter-by-parameter rule.
    """
    mixed = momentum * bank[index] + (1.0 - momentum) * features.to(bank.dtype)
    bank[index] = F.normalize(mixed, dim=1)


class Jigsaw:
    """A CHW image cut into a `grid` x `grid` tiling of equal patches, returned in a random
    order as a (grid^2, C, H/grid, W/grid) tensor: every pixel kept, only the order drawn."""

    def __init__(self, grid: int = JIGSAW_GRID):
        self.grid = grid

    def __call__(self, image: Tensor) -> Tensor:
        channels, height, width = image.shape
        if height % self.grid or width % self.grid:
            raise ValueError(f"a {height} x {width} image does not tile into {self.grid} x {self.grid} patches")
        h, w = height // self.grid, width // self.grid
        patches = image.reshape(channels, self.grid, h, self.grid, w).permute(1, 3, 0, 2, 4)
        patches = patches.reshape(self.grid * self.grid, channels, h, w)
        return patches[torch.randperm(len(patches))]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(grid={self.grid})"


class ImageAndJigsaw:
    """PIRL's two inputs of one image: an augmented view I and the jigsaw patches of
    another augmented view, I^t."""

    def __init__(self, view, jigsaw_view):
        self.view = view
        self.jigsaw = v2.Compose([jigsaw_view, Jigsaw()])

    def __call__(self, image: Tensor) -> tuple[Tensor, Tensor]:
        return self.view(image), self.jigsaw(image)


class IndexedDataset(Dataset):
    """Items ``((*inputs, index), label)`` of `dataset`'s ``(inputs, label)`` items (``None``
    stays ``None``): the index names the image's memory-bank entry."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.root = getattr(dataset, "root", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if item is None:
            return None
        inputs, label = item
        return (*inputs, index), label


class PIRLOutput(NamedTuple):
    loss: Tensor
    positive_similarity: Tensor  # mean cosine of g(v_I^t) with m_I over the batch (no gradient)


class PIRLNetwork(nn.Module):
    """Trunk, heads f and g, and the memory bank of `num_images` representations."""

    def __init__(self, arch: str, dim: int, num_images: int, temperature: float, loss_weight: float,
                 bank_momentum: float, num_negatives: int):
        super().__init__()
        self.backbone, width = resnet_backbone(arch)
        self.image_head = nn.Linear(width, dim)  # f
        self.patch_head = nn.Linear(width, dim)  # g's per-patch layer
        self.jigsaw_head = nn.Linear(JIGSAW_GRID * JIGSAW_GRID * dim, dim)  # g over the concatenation
        self.temperature, self.loss_weight = temperature, loss_weight
        self.bank_momentum, self.num_negatives = bank_momentum, num_negatives
        self.register_buffer("memory_bank", F.normalize(torch.randn(num_images, dim), dim=1))

    def forward(self, images: Tensor, patches: Tensor, index: Tensor) -> PIRLOutput:
        batch = images.shape[0]
        f = F.normalize(self.image_head(self.backbone(images)).float(), dim=1)
        patch_features = self.patch_head(self.backbone(patches.flatten(0, 1)))  # (B * 9) x dim
        g = F.normalize(self.jigsaw_head(patch_features.reshape(batch, -1)).float(), dim=1)

        with torch.no_grad():
            bank = self.memory_bank.clone()  # updated in place below, before backward
            drawn = torch.randperm(bank.shape[0], device=bank.device)[: self.num_negatives]
            excluded = drawn[None, :] == index[:, None]
        with torch.autocast(device_type=f.device.type, enabled=False):
            positive, negatives = bank[index], bank[drawn]
            loss = (self.loss_weight * pirl_nce(g, positive, negatives, self.temperature, excluded)
                    + (1.0 - self.loss_weight) * pirl_nce(f, positive, negatives, self.temperature, excluded))
        with torch.no_grad():
            all_index, _ = distributed.gather_with_sizes(index)
            all_f, _ = distributed.gather_with_sizes(f.detach())
            memory_bank_update(self.memory_bank, all_index, all_f, self.bank_momentum)
            positive_similarity = (g.detach() * positive).sum(1).mean()
        return PIRLOutput(loss, positive_similarity)


@METHODS.register
@dataclass(frozen=True)
class PIRL(Method):
    """``method=pirl``: PIRL on the ``train/`` split of an image-folder role ``pretrain``."""

    name: ClassVar[str] = "pirl"
    roles: ClassVar[dict[str, DataRole]] = {"pretrain": DataRole(IMAGE_FOLDER, "synthetic-objects", ("train",))}
    dim: int = 128  # width of f and g (PIRL: 128)
    temperature: float = 0.07  # tau of Eq. 2 (PIRL: 0.07)
    loss_weight: float = 0.5  # lambda of Eq. 5 (PIRL: 0.5)
    # Weight of the old m_I in the bank's moving average: an equal mix, our assumption (the
    # figure is not read from the paper here).
    bank_momentum: float = 0.5
    # |D_N| (PIRL: 32,000 of 1.28M). A set of fewer images gives all its entries but the
    # query's own: no false negative, unlike MoCo's queue, so no warning.
    num_negatives: int = 32000
    crop_scale_min: float = 0.2  # RandomResizedCrop's area range of both views
    crop_scale_max: float = 1.0

    def problems(self, trial: Any) -> list[str]:
        out = []
        if self.dim < 1:
            out.append(f"dim={self.dim} must be at least 1")
        if self.temperature <= 0:
            out.append(f"temperature={self.temperature} must be positive")
        if not 0.0 <= self.loss_weight <= 1.0:
            out.append(f"loss_weight={self.loss_weight} must be in [0, 1] (lambda of PIRL Eq. 5)")
        if not 0.0 <= self.bank_momentum < 1.0:
            out.append(f"bank_momentum={self.bank_momentum} must be in [0, 1)")
        if self.num_negatives < 2:
            out.append(f"num_negatives={self.num_negatives} must be at least 2 (one may be the query's own image)")
        crop = crop_scale_problem(self.crop_scale_min, self.crop_scale_max)
        return out + ([crop] if crop else [])

    def build_model(self, trial: Any) -> PIRLNetwork:
        from datasets.image_folder import scan_image_folder

        samples, _ = scan_image_folder(split_dir(trial.root("pretrain"), "train"))
        return PIRLNetwork(trial.arch, self.dim, len(samples), self.temperature, self.loss_weight,
                           self.bank_momentum, self.num_negatives)

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        from datasets.image_folder import ImageFolderDataset

        size, scale = int(trial.image_size), (self.crop_scale_min, self.crop_scale_max)
        # The jigsaw view is the side rounded up to a multiple of 3, so the patches tile it.
        views = ImageAndJigsaw(mocov2_transform(size, scale),
                               mocov2_transform(JIGSAW_GRID * math.ceil(size / JIGSAW_GRID), scale))
        return IndexedDataset(ImageFolderDataset(split_dir(roots["pretrain"], "train"), transform=views))

    def training_step(self, model: nn.Module, inputs: Any, labels: Tensor) -> StepOutput:
        images, patches, index = inputs
        out = model(images, patches, index)
        return StepOutput(out.loss, {"positive_similarity": out.positive_similarity})
