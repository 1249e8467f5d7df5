"""Backbone weights from any checkpoint a researcher has: this project's, official MoCo's,
or a torchvision ResNet state dict, so that every representation is scored the same way.

Formats (all loaded with ``torch.load(..., weights_only=True)``):

- this project's ``checkpoint.pt``: ``{"model": <the method's state dict>, "epoch": ...}``;
  the backbone is the method model's ``backbone`` (MoCo: ``encoder_q.backbone.*``,
  supervised: ``backbone.*``);
- official MoCo (``main_moco.py``): ``{"state_dict": {"module.encoder_q.<resnet keys>"...},
  "arch": ...}``; the query encoder's trunk, without its ``fc`` head;
- a torchvision ResNet state dict (``resnet50-*.pth``): the ResNet's own keys, ``fc`` dropped.

The architecture is read off the weights: the one torchvision ResNet-family model whose
trunk has exactly these keys and shapes.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from datasets.errors import DatasetFormatError
from trainables.models import ARCH_FAMILIES, resnet_backbone

PROJECT, OFFICIAL_MOCO, TORCHVISION = "project", "official-moco", "torchvision"
# Where a project method model keeps its trunk, in the order tried.
PROJECT_BACKBONE_PREFIXES = ("encoder_q.backbone.", "backbone.")


class CheckpointFormatError(DatasetFormatError):
    """A checkpoint file that is none of the formats above (the message names the file)."""


@dataclass(frozen=True)
class BackboneWeights:
    """A trunk's state dict (torchvision key names, no classifier), its architecture,
    the file's format and a digest of the weights (a cache key for their features)."""

    arch: str
    state_dict: dict[str, torch.Tensor]
    source_format: str
    digest: str

    def build(self) -> nn.Module:
        backbone, _ = resnet_backbone(self.arch)
        backbone.load_state_dict(self.state_dict)
        return backbone.eval()


def load_backbone_weights(path: Path | str) -> BackboneWeights:
    path = Path(path)
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: checkpoint file does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and weights-only refusals all mean "not a checkpoint we read"
        raise CheckpointFormatError(f"{path}: not a torch checkpoint loadable with weights_only=True ({err})") from None
    if not isinstance(state, dict):
        raise CheckpointFormatError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    if isinstance(state.get("model"), dict):
        model = state["model"]
        for prefix in PROJECT_BACKBONE_PREFIXES:
            trunk = _strip(model, prefix)
            if trunk:
                return _weights(path, trunk, PROJECT)
        raise CheckpointFormatError(f"{path}: a project checkpoint whose model has no "
                                    f"{' or '.join(p + '*' for p in PROJECT_BACKBONE_PREFIXES)} keys")
    if isinstance(state.get("state_dict"), dict):
        trunk = _strip(state["state_dict"], "module.encoder_q.")
        if not trunk:
            raise CheckpointFormatError(f"{path}: a 'state_dict' without 'module.encoder_q.*' keys "
                                        "(not an official MoCo checkpoint)")
        return _weights(path, _without_classifier(trunk), OFFICIAL_MOCO)
    if state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return _weights(path, _without_classifier(state), TORCHVISION)
    raise CheckpointFormatError(f"{path}: neither a project checkpoint ('model'), an official MoCo "
                                "checkpoint ('state_dict') nor a torchvision state dict (tensors only)")


def _strip(state: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _without_classifier(state: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _weights(path: Path, trunk: dict[str, torch.Tensor], source_format: str) -> BackboneWeights:
    arch = infer_arch(trunk, path)
    digest = hashlib.sha256()
    for key in sorted(trunk):
        digest.update(key.encode())
        digest.update(trunk[key].detach().cpu().contiguous().numpy().tobytes())
    return BackboneWeights(arch, trunk, source_format, digest.hexdigest()[:16])


def infer_arch(trunk: dict[str, torch.Tensor], path: Path | str = "") -> str:
    """The torchvision ResNet-family model whose trunk has exactly `trunk`'s keys and shapes."""
    shapes = {k: tuple(v.shape) for k, v in trunk.items()}
    for arch in torchvision.models.list_models(module=torchvision.models):
        if not arch.startswith(ARCH_FAMILIES):
            continue
        with torch.device("meta"):  # shapes only, no memory
            model = torchvision.models.get_model(arch, weights=None)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("fc.")}
        if expected == shapes:
            return arch
    raise CheckpointFormatError(f"{path}: its {len(trunk)} backbone tensors match no torchvision "
                                "ResNet-family model")
