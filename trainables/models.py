"""Encoders: a torchvision ResNet trunk with a MoCo v2 projection head."""
from __future__ import annotations

import torch
import torchvision
from torch import nn


# Trunks with a global-average-pooled output and an `fc` classifier to strip.
ARCH_FAMILIES = ("resnet", "resnext", "wide_resnet")


def arch_problem(arch: str) -> str | None:
    """Why `arch` cannot be a backbone (None if it can): a torchvision ResNet-family name."""
    known = torchvision.models.list_models(module=torchvision.models)
    if arch.startswith(ARCH_FAMILIES) and arch in known:
        return None
    names = ", ".join(m for m in known if m.startswith(ARCH_FAMILIES))
    return f"arch={arch!r} is not a torchvision ResNet-family model ({names})"


def resnet_backbone(arch: str) -> tuple[nn.Module, int]:
    """A randomly initialised torchvision ResNet without its classifier.

    Returns the trunk (image -> global-average-pooled features) and the feature width
    (512 for resnet18/34, 2048 for resnet50 and up). These pooled features are what
    evaluation freezes and probes.
    """
    problem = arch_problem(arch)
    if problem:
        raise ValueError(problem)
    net = torchvision.models.get_model(arch, weights=None)
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim


# What evaluation freezes and scores: "pool" is the trunk's global-average-pooled output
# (after layer4, the paper's choice); "layerN" is that stage's output, average-pooled;
# "layer4_2x2" is layer4 pooled to a 2 x 2 grid as Goyal et al. 2019's VOC07 SVM feature
# (`GridPooledLayer4`; the ``goyal2019`` SVM protocol's layer).
SCORED_LAYERS = ("pool", "layer1", "layer2", "layer3", "layer4_2x2")


class PooledStage(nn.Module):
    """A ResNet trunk up to one stage (torchvision's feature extractor), average-pooled."""

    def __init__(self, trunk: nn.Module, layer: str):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.stage = create_feature_extractor(trunk, return_nodes={layer: "features"})
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stage(x)["features"]).flatten(1)


class GridPooledLayer4(nn.Module):
    """layer4 average-pooled with an (h - 1) x (w - 1) window at stride 1: a 2 x 2 grid,
    flattened (4 x the trunk's width).

    Goyal et al. 2019's VOC07 SVM feature of a ResNet-50 is res5 pooled with a 6 x 6 window
    at stride 1 (``res5_2_branch2c_bn_s1k6_resize`` in facebookresearch/
    fair_self_supervision_benchmark ``configs/.../voc07/resnet50_*_extract_features.yaml``;
    VISSL's ``["res5", ["AvgPool2d", [[6, 6], 1, 0]]]``): on the 7 x 7 map of a 224 px image
    that is exactly this, 8,192 dims. On other sizes the same rule keeps the 2 x 2 grid of
    overlapping windows: a ResNet-18 at the default 64 px has a 2 x 2 map, pooled 1 x 1
    (2,048 dims); a map of side 1 (32 px) leaves a 1 x 1 window there, the global pool.
    """

    def __init__(self, trunk: nn.Module):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.stage = create_feature_extractor(trunk, return_nodes={"layer4": "features"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.stage(x)["features"]
        h, w = maps.shape[-2:]
        window = (max(h - 1, 1), max(w - 1, 1))
        return nn.functional.avg_pool2d(maps, window, stride=1).flatten(1)


def scored_layer(trunk: nn.Module, layer: str) -> nn.Module:
    """The network whose output evaluation scores: `trunk` itself for "pool", layer4 on a
    2 x 2 grid for "layer4_2x2", else the trunk cut after `layer` and average-pooled (in the
    trunk's train/eval mode)."""
    if layer not in SCORED_LAYERS:
        raise ValueError(f"eval_layer={layer!r} is not one of {', '.join(SCORED_LAYERS)}")
    if layer == "pool":
        return trunk
    if layer == "layer4_2x2":
        return GridPooledLayer4(trunk).train(trunk.training)
    return PooledStage(trunk, layer).train(trunk.training)


def mlp_head(in_dim: int, out_dim: int) -> nn.Sequential:
    """MoCo v2's two-layer projection head: Linear(d, d) - ReLU - Linear(d, dim)."""
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))


class Encoder(nn.Module):
    """Backbone followed by the projection head: f(x) in the paper's Eq. 1 (before L2 norm)."""

    def __init__(self, arch: str, dim: int):
        super().__init__()
        self.backbone, self.feature_dim = resnet_backbone(arch)
        self.head = mlp_head(self.feature_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
