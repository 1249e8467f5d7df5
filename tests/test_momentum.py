"""The shared momentum-encoder helper: the EMA rule and BYOL's tau schedule."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainables.momentum import byol_tau, ema_update


def test_ema_moves_each_target_parameter_by_the_rule_and_leaves_buffers():
    torch.manual_seed(0)
    online, target = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)), nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    target[1].running_mean.fill_(5.0)
    before = [p.detach().clone() for p in target.parameters()]
    ema_update(target, online, 0.75)
    for t0, t, o in zip(before, target.parameters(), online.parameters()):
        torch.testing.assert_close(t.detach(), 0.75 * t0 + 0.25 * o.detach(), rtol=0, atol=0)
        assert not t.requires_grad or t.grad is None
    assert torch.equal(target[1].running_mean, torch.full((2,), 5.0))
    with pytest.raises(ValueError):  # architectures that differ are refused, not half-updated
        ema_update(target, nn.Linear(3, 2), 0.5)


def test_byol_tau_rises_from_its_base_to_one_on_a_cosine():
    assert byol_tau(0, 100, 0.996) == pytest.approx(0.996)
    assert byol_tau(50, 100, 0.996) == pytest.approx(0.998)  # (cos(pi/2) + 1) / 2 = 1/2
    assert byol_tau(100, 100, 0.996) == pytest.approx(1.0)
    assert byol_tau(25, 100, 0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    with pytest.raises(ValueError):
        byol_tau(101, 100, 0.996)
