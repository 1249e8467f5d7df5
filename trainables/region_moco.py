"""MoCo with a region branch: the Region Tracker's model (paper Sec. 5, Appendix B, Algorithm 1).

A batch holds frame pairs (x1, x2) = (z_i, z_{i+k}) and, per pair, one tracked region
pair (box in x1, box in x2), both boxes moved by the same augmentation as their frame.
Per Algorithm 1 with ``use_tracks``:

- frame loss: the query q = f_q(aug(x1)) against the key k = f_k(aug(x2)) and the queue
  (InfoNCE, Eq. 1), exactly MoCo's;
- region loss: the region query is ROI-aligned from layer3 of the query encoder on the
  same augmented x1 (one trunk pass serves both), then sent through layer4, pooling and
  the projection head ("we use ROI-Pooling at layer3"); the region key likewise from the
  key encoder on aug(x2). InfoNCE against the same queue;
- loss = 0.5 x frame loss + 0.5 x region loss (``region_weight``; samples whose region
  left the crop are left out of the region term).

**The region batch norm.** layer4 runs in training mode on the step's regions alone, so its
batch statistics cover regions x (roi_size / 2)^2 values per channel. At ``roi_size=2``
that is one value per region: with two regions the output is their sign and the backward
pass divides by their difference: 2 (3) regions in a small batch sent conv1 a gradient
51-447x (2-9x) the frame loss's (measured at initialisation). ``roi_size=4`` (2 x 2 after layer4)
keeps it below the frame loss's; the paper's batch of 256 has regions to spare.

**The shared queue.** There is one queue of K keys. Both losses of a step use the queue
as it was before the step (Algorithm 1 computes both, then updates), so a region query
is contrasted with earlier frame and region keys alike, and vice versa. After the step
the global batch of frame keys is enqueued, then the global batch of region keys
(``enqueue(queue, k)``, then ``enqueue(queue, k_patch)``): each step moves up to two
global batches into the ring, so the queue covers half as many steps as plain MoCo's.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from trainables import distributed
from trainables.losses import info_nce
from trainables.moco import MoCo
from trainables.momentum import ema_update
from trainables.regions import after_layer3, layer3, region_embedding, xywh_to_rois


class RegionMoCoOutput(NamedTuple):
    loss: torch.Tensor
    frame_loss: torch.Tensor
    region_loss: torch.Tensor  # 0 when no sample of the batch kept its region
    keys: torch.Tensor  # this worker's frame keys
    region_keys: torch.Tensor  # this worker's region keys (valid samples only)


class RegionMoCo(MoCo):
    """MoCo v2 plus the Region Tracker's region-pair loss (module docstring)."""

    def __init__(self, *args, roi_size: int = 4, region_weight: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        if roi_size < 1 or not 0.0 <= region_weight <= 1.0:
            raise ValueError(f"roi_size={roi_size} must be >= 1 and region_weight={region_weight} in [0, 1]")
        self.roi_size = roi_size
        self.region_weight = region_weight

    def embed_regions(self, encoder, feature_map: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings of one ``x, y, w, h`` box per image of ``feature_map``."""
        index = torch.arange(boxes.shape[0], device=boxes.device)
        pooled = region_embedding(encoder.backbone, feature_map, xywh_to_rois(boxes, index), self.roi_size)
        return F.normalize(encoder.head(pooled).float(), dim=1)

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor, box_q: torch.Tensor | None = None,
                box_k: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> RegionMoCoOutput:
        encoder_q = self.encoder_q
        feature_map = layer3(encoder_q.backbone, im_q)
        q = F.normalize(encoder_q.head(after_layer3(encoder_q.backbone, feature_map)).float(), dim=1)
        if valid is None or box_q is None:
            valid = torch.zeros(im_q.shape[0], dtype=torch.bool, device=im_q.device)
        valid = valid.bool()
        # Batch norm in training mode needs two or more samples: a lone tracked region in this
        # worker's batch is left out of the region term (its frame pair still counts).
        if int(valid.sum()) < 2:
            valid = torch.zeros_like(valid)
        q_region = self.embed_regions(encoder_q, feature_map[valid], box_q[valid]) if valid.any() else q[:0]

        with torch.no_grad():
            ema_update(self.encoder_k, self.encoder_q, self.momentum)
            k, k_all = self._keys(im_k)  # frame keys exactly as MoCo computes them (shuffle-BN)
            # Region keys: a second key-encoder pass on the key frames (no shuffle: the
            # region query and key come from different frames of different augmentations).
            if valid.any():
                k_region = self.embed_regions(self.encoder_k, layer3(self.encoder_k.backbone, im_k[valid]), box_k[valid])
            else:
                k_region = k[:0]
            k_region_all, _ = distributed.gather_with_sizes(k_region)

        with torch.autocast(device_type=q.device.type, enabled=False):
            queue = self.queue.clone().detach()  # both losses see the queue as it was before this step
            frame_loss, _ = info_nce(q, k, queue, self.temperature)
            if q_region.shape[0]:
                region_loss, _ = info_nce(q_region, k_region, queue, self.temperature)
            else:
                region_loss = q.sum() * 0.0  # keeps every rank's graph the same shape for DDP
        # Algorithm 1: loss = 0.5 * loss + 0.5 * loss_patch.
        loss = (1.0 - self.region_weight) * frame_loss + self.region_weight * region_loss
        self._dequeue_and_enqueue(k_all)
        if k_region_all.shape[0]:
            self._dequeue_and_enqueue(k_region_all)
        return RegionMoCoOutput(loss, frame_loss.detach(), region_loss.detach(), k, k_region)
