"""Momentum (EMA) encoders: a target network that trails an online one, as MoCo's key
encoder (He et al. 2020, Eq. 2, a constant m) and BYOL's target network (Grill et al.
2020, Sec. 3.1, its rate scheduled by :func:`byol_tau`)."""
from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """theta_target <- tau * theta_target + (1 - tau) * theta_online, parameter by parameter.

    Parameters only: the target's batch-norm statistics stay its own (it normalises its own
    inputs in training mode). `target` and `online` have the same architecture.
    """
    pairs = list(zip(target.parameters(), online.parameters()))
    if any(t.shape != o.shape for t, o in pairs) or len(pairs) != len(list(target.parameters())) \
            or len(pairs) != len(list(online.parameters())):
        raise ValueError("ema_update: the target and online modules have different parameters")
    for param_t, param_o in pairs:
        param_t.copy_(param_t * tau + param_o.detach() * (1.0 - tau))


def byol_tau(step: int, total_steps: int, tau_base: float) -> float:
    """BYOL's target decay rate at training step k of K (Grill et al. 2020, Sec. 3.3, "Optimization"):
    tau = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2, rising from tau_base at k = 0 to 1
    at k = K."""
    if total_steps < 1 or not 0 <= step <= total_steps:
        raise ValueError(f"step={step} must be in [0, total_steps={total_steps}] with total_steps >= 1")
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0
