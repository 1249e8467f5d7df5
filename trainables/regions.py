"""Region features of a ResNet: ROI-align on layer3 (paper Appendix B, "Generating Tracks"
and "Implementation Details").

- :func:`layer3` runs a torchvision ResNet trunk up to layer3 (stride 16);
- :func:`roi_features` pools boxes from it with ``torchvision.ops.roi_align``;
- :func:`region_embedding` sends pooled regions through the rest of the network
  (layer4, global pooling): how the Region Tracker embeds a tracked patch;
- :class:`Layer3RegionFeatures` is the picklable feature function of the
  ``region_features`` stage (``datasets.video.regions``): the baseline model's layer3,
  ROI-aligned to ``roi_size`` x ``roi_size`` cells and flattened, for the track scores.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.ops import roi_align

from trainables.augment import IMAGENET_MEAN, IMAGENET_STD

LAYER3_STRIDE = 16


def layer3(trunk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A torchvision ResNet's feature map after layer3 (stride 16)."""
    x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))
    return trunk.layer3(trunk.layer2(trunk.layer1(x)))


def after_layer3(trunk: nn.Module, feature_map: torch.Tensor) -> torch.Tensor:
    """The rest of the trunk: layer4 and global average pooling (the trunk's output)."""
    return torch.flatten(trunk.avgpool(trunk.layer4(feature_map)), 1)


def xywh_to_rois(boxes: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
    """``(n, 5)`` roi_align rows ``(image, x0, y0, x1, y1)`` from ``x, y, w, h`` boxes."""
    boxes = boxes.float()
    return torch.cat([batch_index.float()[:, None], boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)


def roi_features(feature_map: torch.Tensor, rois: torch.Tensor, size: int) -> torch.Tensor:
    """``(n, C, size, size)`` ROI-aligned cells of ``feature_map`` (image pixels -> stride 16)."""
    return roi_align(feature_map, rois.to(feature_map.dtype), output_size=(size, size),
                     spatial_scale=1.0 / LAYER3_STRIDE, sampling_ratio=2, aligned=True)


def region_embedding(trunk: nn.Module, feature_map: torch.Tensor, rois: torch.Tensor, size: int) -> torch.Tensor:
    """Regions embedded by ROI-align on layer3, then layer4 and pooling (Appendix B)."""
    return after_layer3(trunk, roi_features(feature_map, rois, size))


@dataclass(frozen=True)
class Layer3RegionFeatures:
    """The track scores' feature function: ROI-aligned layer3 of a backbone, flattened.

    Picklable (a Ray Data actor builds it): ``weights`` is a checkpoint path
    (``trainables.weights`` formats) or "" for a randomly initialised ``arch`` drawn
    from ``seed``. Calling the built function maps RGB uint8 frames and their ``x, y, w,
    h`` boxes to ``(n_i, C * roi_size^2)`` float32 arrays.
    """

    arch: str = "resnet18"
    weights: str = ""
    seed: int = 0
    roi_size: int = 2
    batch_frames: int = 32

    def key(self) -> str:
        """What the features depend on: the weights' digest (or the seed), the pooling."""
        from trainables.weights import load_backbone_weights

        model = load_backbone_weights(self.weights).digest if self.weights else f"random-{self.arch}-seed{self.seed}"
        return f"{model}-layer3-roi{self.roi_size}"

    def build_trunk(self) -> nn.Module:
        from trainables.models import resnet_backbone
        from trainables.weights import load_backbone_weights

        if self.weights:
            return load_backbone_weights(self.weights).build()
        torch.manual_seed(self.seed)
        trunk, _ = resnet_backbone(self.arch)
        return trunk.eval()

    def __call__(self):
        """The feature function (built once per actor)."""
        torch.set_num_threads(1)  # one actor per core
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        trunk = self.build_trunk().to(device)
        mean = torch.tensor(IMAGENET_MEAN, device=device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, device=device)[:, None, None]

        @torch.no_grad()
        def features(images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
            out: list[np.ndarray] = []
            for start in range(0, len(images), self.batch_frames):
                chunk_images, chunk_boxes = images[start: start + self.batch_frames], boxes[start: start + self.batch_frames]
                groups: dict[tuple, list[int]] = {}  # frames of one size share a forward pass
                for i, image in enumerate(chunk_images):
                    groups.setdefault(image.shape, []).append(i)
                results: dict[int, np.ndarray] = {}
                for members in groups.values():
                    x = torch.from_numpy(np.stack([chunk_images[i] for i in members])).to(device)
                    x = (x.permute(0, 3, 1, 2).float() / 255 - mean) / std
                    feature_map = layer3(trunk, x)
                    counts = [len(chunk_boxes[i]) for i in members]
                    flat = torch.from_numpy(np.concatenate([np.asarray(chunk_boxes[i], np.float32).reshape(-1, 4)
                                                            for i in members])).to(device)
                    index = torch.repeat_interleave(torch.arange(len(members), device=device),
                                                    torch.tensor(counts, device=device))
                    pooled = roi_features(feature_map, xywh_to_rois(flat, index), self.roi_size).flatten(1)
                    for i, part in zip(members, pooled.split(counts)):
                        results[i] = part.float().cpu().numpy()
                out += [results[i] for i in range(len(chunk_images))]
            return out

        return features
