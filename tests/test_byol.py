"""BYOL: the loss against an explicit computation, the target's EMA with its tau schedule, settings."""
from __future__ import annotations

import math

import pytest
import torch

from orchestrator.config import ConfigError, TrialConfig, check
from trainables.methods.byol import BYOLModel, byol_loss


def tiny_trial(**changes) -> TrialConfig:
    return TrialConfig().override({"method": "byol", "method.dim": 8, "method.hidden_dim": 16, **changes})


def test_byol_loss_is_eq_2_the_squared_distance_of_unit_vectors():
    p = torch.tensor([[3.0, 4.0], [1.0, 0.0]], requires_grad=True)
    z = torch.tensor([[4.0, 3.0], [0.0, 2.0]], requires_grad=True)
    # Row 0: cos = 24/25, 2 - 2 cos = 0.08; row 1: orthogonal, 2.
    explicit = sum(sum((a / math.hypot(*pr) - b / math.hypot(*zr)) ** 2 for a, b in zip(pr, zr))
                   for pr, zr in zip(p.tolist(), z.tolist())) / 2
    loss = byol_loss(p, z)
    assert loss.item() == pytest.approx(explicit) == pytest.approx((0.08 + 2.0) / 2)
    loss.backward()
    assert p.grad is not None and z.grad is None  # the stop-gradient on the target


def test_the_step_is_the_symmetric_loss_and_only_the_online_network_learns():
    trial = tiny_trial()
    torch.manual_seed(0)
    model = trial.method.build_model(trial)
    assert isinstance(model, BYOLModel) and trial.method.backbone(model) is model.online[0]
    x1, x2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    out = trial.method.training_step(model, (x1, x2), torch.zeros(4))
    with torch.no_grad():
        p1, p2 = model.predictor(model.online(x1)), model.predictor(model.online(x2))
        z1, z2 = model.target(x1), model.target(x2)
    assert out.loss.item() == pytest.approx((byol_loss(p1, z2) + byol_loss(p2, z1)).item(), rel=1e-5)
    assert out.metrics["target_tau"].item() == pytest.approx(0.996)
    out.loss.backward()
    assert all(p.grad is not None for p in [*model.online.parameters(), *model.predictor.parameters()])
    assert all(p.grad is None and not p.requires_grad for p in model.target.parameters())


def test_the_target_moves_by_the_ema_rule_at_the_scheduled_tau():
    trial = tiny_trial(**{"method.tau_base": 0.9})
    torch.manual_seed(0)
    model = trial.method.build_model(trial)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    out = trial.method.training_step(model, (torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)), None)
    out.loss.backward()
    optimizer.step()
    target_before = [p.detach().clone() for p in model.target.parameters()]
    online = [p.detach().clone() for p in model.online.parameters()]
    assert any(not torch.equal(t, o) for t, o in zip(target_before, online))  # the online network moved
    trial.method.on_step_end(model, step=1, total_steps=4)
    tau = 1 - (1 - 0.9) * (math.cos(math.pi / 4) + 1) / 2  # BYOL's schedule at k = 1 of K = 4
    for t0, t, o in zip(target_before, model.target.parameters(), online):
        torch.testing.assert_close(t.detach(), tau * t0 + (1 - tau) * o)
    assert model.target_tau.item() == pytest.approx(tau)
    # The next step reports the rate of this update.
    out = trial.method.training_step(model, (torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)), None)
    assert out.metrics["target_tau"].item() == pytest.approx(tau)


def test_byol_settings_are_checked_before_ray():
    assert tiny_trial(optimizer="lars").problems() == []
    with pytest.raises(ConfigError, match=r"method.tau_base=1.5 must be in \[0, 1\]"):
        check([tiny_trial(**{"method.tau_base": 1.5})])
    with pytest.raises(ConfigError, match="method.projector: its batch norm needs at least 2 images per worker"):
        check([tiny_trial(batch_size=2, num_workers=2)])
