"""MoCo v2 (He et al. 2020; Chen et al. 2020), the baseline of the paper's Sections 4-5.

Batch norm: shuffle-BN, as in MoCo. With per-worker batch norm a query and its
positive key are normalised with statistics of the same small batch, and the network
can find the positive through those statistics instead of through the image ("cheating",
MoCo Sec. 3.3). Shuffle-BN computes the keys on a random permutation of the global batch
spread over the workers, so a query and its key are normalised over two different
subsets of images. SyncBN (normalising over the whole global batch) was not chosen
because torch's SyncBatchNorm refuses CPU tensors, so it could not run the gloo/CPU
multi-worker path. Shuffle-BN needs no process group: with one worker (or none) there
is nothing to shuffle across, so training runs anywhere (public MoCo code fails there:
its shuffle-BN demands several GPUs). To keep the protection on any number of workers,
``shuffle_bn_groups = G > 1`` also splits each worker's shuffled key batch into G random
sub-batches, each normalised on its own, as MoCo's single-GPU demonstrations emulate G
GPUs: a query and its key are then normalised over different images even on one worker.
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from trainables import distributed
from trainables.adversarial import adversarial_problems, combined_loss, fgsm_view
from trainables.losses import info_nce
from trainables.models import Encoder
from trainables.momentum import ema_update


class MoCoOutput(NamedTuple):
    loss: torch.Tensor  # with adversarial examples on, (1 - alpha) * clean + alpha * adversarial
    logits: torch.Tensor  # N x (1 + K), divided by the temperature, positives in column 0 (clean queries)
    keys: torch.Tensor  # N x dim, this worker's L2-normalised keys (what it enqueued, in its rank slot)
    adversarial_loss: torch.Tensor | None = None  # InfoNCE of the FGSM queries (None: the option is off)


def moco_problems(dim: int, queue_size: int, momentum: float, temperature: float,
                  global_batch: int | None = None) -> list[str]:
    """Why these MoCo settings cannot train (empty: they can). Keys as in ``method.*``.

    The queue holds whole global batches (each step enqueues the global batch), so K
    must be a multiple of it when `global_batch` is known.
    """
    out = []
    if dim < 1:
        out.append(f"dim={dim} must be at least 1")
    if queue_size < 1:
        out.append(f"queue_size={queue_size} must be at least 1")
    elif global_batch and queue_size % global_batch:
        out.append(f"queue_size={queue_size} must be a multiple of the global batch_size={global_batch} "
                   "(each step enqueues the whole global batch)")
    if not 0.0 <= momentum < 1.0:
        out.append(f"momentum={momentum} must be in [0, 1)")
    if temperature <= 0:
        out.append(f"temperature={temperature} must be positive")
    return out


def queue_overlap_warning(queue_size: int, num_images: int, where: str) -> str | None:
    """A warning when the queue is not smaller than the pretraining set, else None.

    With K >= N keys in the queue, every query meets keys of its own image (earlier
    views) among its negatives: false negatives that push apart what the positive pulls
    together. Measured on the synthetic objects (BENCHMARKS.md, "Does pretraining
    learn?"): K = 4096 over 1,600 images drove the loss back up towards log(K + 1) and
    the probe below the random initialisation. MoCo's own setting is K = 65,536 of 1.28M
    images (5 %).
    """
    if queue_size < num_images:
        return None
    return (f"{where}: method.queue_size={queue_size} is not smaller than the {num_images} "
            f"pretraining images, so every query has keys of its own image among its "
            f"negatives; keep K well below the dataset size (MoCo: 65,536 of 1.28M)")


class MoCo(nn.Module):
    """Query encoder, momentum key encoder and a queue of negative keys.

    Args:
        arch: torchvision ResNet name.
        dim: output width of the projection head (C).
        queue_size: K, number of negative keys.
        momentum: m of the key-encoder update k <- m k + (1 - m) q.
        temperature: tau of Eq. 1.
        shuffle_bn_groups: G, key sub-batches per worker normalised separately (1: one).
        adversarial_weight: alpha of adversarial contrastive examples (``trainables.adversarial``;
            0: off): the queries' FGSM versions meet the same keys and queue.
        adversarial_epsilon: their FGSM step, in pixel units.
    """

    def __init__(self, arch: str = "resnet18", dim: int = 128, queue_size: int = 4096,
                 momentum: float = 0.99, temperature: float = 0.2, shuffle_bn_groups: int = 1,
                 adversarial_weight: float = 0.0, adversarial_epsilon: float = 0.0):
        super().__init__()
        if problems := moco_problems(dim, queue_size, momentum, temperature) + adversarial_problems(
                adversarial_weight, adversarial_epsilon):
            raise ValueError("; ".join(problems))
        if shuffle_bn_groups < 1:
            raise ValueError(f"shuffle_bn_groups={shuffle_bn_groups} must be at least 1")
        self.momentum = momentum
        self.temperature = temperature
        self.shuffle_bn_groups = shuffle_bn_groups
        self.adversarial_weight = adversarial_weight
        self.adversarial_epsilon = adversarial_epsilon

        self.encoder_q = Encoder(arch, dim)
        self.encoder_k = copy.deepcopy(self.encoder_q)  # starts equal to the query encoder
        self.encoder_k.requires_grad_(False)  # updated only by the momentum rule

        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @property
    def backbone(self) -> nn.Module:
        """The query encoder's trunk: the representation that is evaluated."""
        return self.encoder_q.backbone

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest keys with `keys` (the whole global batch, in rank order)."""
        queue_size = self.queue.shape[1]
        # A batch that lost corrupt images is shorter than the nominal batch that K is a
        # multiple of; indexing modulo K keeps the ring (identical on every rank) intact.
        # The pointer stays a device tensor: reading it on the host would wait for the GPU.
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % queue_size
        self.queue[:, idx] = keys.T.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % queue_size)

    @torch.no_grad()
    def _keys(self, im_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The momentum encoder's keys of `im_k` with shuffle-BN: (this rank's keys, the
        global batch's keys in rank order)."""
        im_k_shuffled, idx_shuffle, sizes = _shuffle_across_ranks(im_k)
        k_shuffled = F.normalize(grouped_bn_forward(self.encoder_k, im_k_shuffled, self.shuffle_bn_groups).float(), dim=1)
        # Undo the shuffle on the gathered keys: the global batch in rank order,
        # which is both what the queue takes and where this rank's keys are.
        k_all, _ = distributed.gather_with_sizes(k_shuffled)
        k_all = k_all[torch.argsort(idx_shuffle)]
        start = sum(sizes[: distributed.rank()])
        return k_all[start: start + im_k.shape[0]], k_all

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor) -> MoCoOutput:
        adversarial = self.adversarial_weight > 0
        if adversarial:  # FGSM needs the loss's gradient with respect to the query images
            im_q = im_q.detach().requires_grad_(True)
        q = F.normalize(self.encoder_q(im_q).float(), dim=1)

        with torch.no_grad():
            ema_update(self.encoder_k, self.encoder_q, self.momentum)
            k, k_all = self._keys(im_k)

        # The queue is cloned: it is updated in place below, before backward needs it.
        # The logits stay in fp32 under mixed precision (differences of cosines / tau).
        queue = self.queue.clone().detach()
        with torch.autocast(device_type=q.device.type, enabled=False):
            loss, logits = info_nce(q, k, queue, self.temperature)
        adversarial_loss = None
        if adversarial:
            # The FGSM queries meet the same keys and queue: one momentum update, one enqueue.
            q_adv = F.normalize(self.encoder_q(fgsm_view(loss, im_q, self.adversarial_epsilon)).float(), dim=1)
            with torch.autocast(device_type=q.device.type, enabled=False):
                adversarial_loss, _ = info_nce(q_adv, k, queue, self.temperature)
            loss = combined_loss(loss, adversarial_loss, self.adversarial_weight)
        self._dequeue_and_enqueue(k_all)
        return MoCoOutput(loss, logits, k, adversarial_loss)


def shuffle_bn_problem(worker_batch: int, groups: int) -> str | None:
    """Why `groups` cannot split a worker's batch of `worker_batch` keys (None when it can):
    equal sub-batches of at least 2 images (one image has no batch statistics to speak of)."""
    if groups < 1 or worker_batch % groups or worker_batch // groups < 2:
        return (f"shuffle_bn_groups={groups} must split each worker's batch of {worker_batch} "
                "into equal sub-batches of at least 2 images")
    return None


@torch.no_grad()
def grouped_bn_forward(encoder: nn.Module, x: torch.Tensor, groups: int) -> torch.Tensor:
    """`encoder` on `x` with batch norm over `groups` random sub-batches, in `x`'s order.

    Shuffle-BN within one worker, the way MoCo's single-GPU demonstrations stand in for
    `groups` GPUs: permute `x`, run each equal chunk through `encoder` on its own (train-mode
    BN normalises it with its own statistics), restore `x`'s order. In MoCo `x` is this
    worker's share of the key batch already shuffled across ranks, so the two compose.
    Chunks hold at least 2 images: one image has no batch statistics to speak of.
    """
    if groups == 1:
        return encoder(x)
    if problem := shuffle_bn_problem(x.shape[0], groups):
        raise ValueError(problem)
    order = torch.randperm(x.shape[0], device=x.device)
    keys = torch.cat([encoder(chunk) for chunk in x[order].chunk(groups)])
    return keys[torch.argsort(order)]


@torch.no_grad()
def _shuffle_across_ranks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Shuffle-BN's input: this rank's share of a random permutation of the global batch.

    Returns the local inputs, the permutation (positions in the gathered batch) and the
    per-rank batch sizes. Identity with one worker.
    """
    x_all, sizes = distributed.gather_with_sizes(x)
    if len(sizes) == 1:
        return x, torch.arange(x.shape[0], device=x.device), sizes
    idx_shuffle = distributed.broadcast_from_rank0(torch.randperm(x_all.shape[0], device=x.device))
    start = sum(sizes[: distributed.rank()])
    return x_all[idx_shuffle[start: start + x.shape[0]]], idx_shuffle, sizes
