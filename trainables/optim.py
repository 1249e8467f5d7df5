"""The pretraining optimiser, chosen by the trial's ``optimizer`` setting, over the method's
parameter groups (``Method.parameter_groups``).

- ``sgd``: torch's SGD with momentum (MoCo v2's optimiser, the default);
- ``lars``: SGD with LARS's layer-wise trust ratio (You et al. 2017), the optimiser of
  SimCLR and BYOL; torch ships none, so :class:`LARS` is here;
- ``adamw``: torch's AdamW (``momentum`` unused; Adam's default betas).

A parameter group may carry ``lars_adaptation=False``: LARS then steps it as plain SGD.
:func:`exclude_bias_and_norm` builds the usual SimCLR/BYOL groups: biases and
normalisation-layer weights without weight decay and without LARS adaptation.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

OPTIMIZERS = ("sgd", "lars", "adamw")

# Modules whose weights are per-channel scales, not filters: no weight decay, no trust ratio.
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def optimizer_problem(name: str) -> str | None:
    """Why `name` is not an optimiser this project builds (None if it is one)."""
    if name in OPTIMIZERS:
        return None
    return f"optimizer={name!r} is not one of {', '.join(OPTIMIZERS)}"


def trainable_parameters(model: nn.Module) -> list[dict]:
    """One parameter group: every parameter that takes gradients (the default groups)."""
    return [{"params": [p for p in model.parameters() if p.requires_grad]}]


def exclude_bias_and_norm(model: nn.Module) -> list[dict]:
    """Two groups of the trainable parameters: weights of linear and convolution layers,
    and the biases and normalisation-layer weights, which take no weight decay and no
    LARS adaptation (the convention of SimCLR, Chen et al. 2020, and BYOL, Grill et al.
    2020, Sec. 3.3: their scale is not a filter norm the trust ratio should track)."""
    decayed, excluded = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            (excluded if isinstance(module, NORM_LAYERS) or name == "bias" else decayed).append(param)
    groups = [{"params": decayed}, {"params": excluded, "weight_decay": 0.0, "lars_adaptation": False}]
    return [group for group in groups if group["params"]]


class LARS(torch.optim.Optimizer):
    """SGD with momentum and LARS's layer-wise learning rate (You et al. 2017, "Large Batch
    Training of Convolutional Networks", Sec. 3 and Algorithm 1).

    For each parameter tensor w (a layer) with gradient g, weight decay beta, trust
    coefficient eta, global rate gamma and momentum m:

        lambda = eta * ||w|| / (||g|| + beta * ||w||)      (the local LR; 1 when a norm is 0)
        v     <- m * v + gamma * lambda * (g + beta * w)
        w     <- w - v

    Groups with ``lars_adaptation=False`` take lambda = 1 (plain SGD with weight decay).
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, lars_adaptation: bool = True):
        if lr <= 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError(f"LARS: lr={lr}, momentum={momentum}, weight_decay={weight_decay}, "
                             f"trust_coefficient={trust_coefficient} must be positive (momentum, decay >= 0)")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                    "trust_coefficient": trust_coefficient, "lars_adaptation": lars_adaptation}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            decay, momentum = group["weight_decay"], group["momentum"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad
                update = g.add(w, alpha=decay) if decay else g.clone()
                if group["lars_adaptation"]:
                    w_norm, g_norm = torch.linalg.vector_norm(w), torch.linalg.vector_norm(g)
                    local_lr = group["trust_coefficient"] * w_norm / (g_norm + decay * w_norm)
                    # A zero norm (fresh zero-initialised layer, no gradient) gives no ratio to trust.
                    update.mul_(torch.where((w_norm > 0) & (g_norm > 0), local_lr, torch.ones_like(local_lr)))
                state = self.state[w]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(w)
                buffer = state["momentum_buffer"]
                buffer.mul_(momentum).add_(update, alpha=group["lr"])
                w.sub_(buffer)
        return loss


def build(name: str, groups: list[dict], lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser `name` (one of :data:`OPTIMIZERS`) over parameter `groups`; a group's
    own ``weight_decay`` (e.g. 0 for biases) overrides `weight_decay`."""
    if (problem := optimizer_problem(name)) is not None:
        raise ValueError(problem)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
