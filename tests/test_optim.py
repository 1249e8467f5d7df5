"""The optimiser from config: LARS's step, the bias/norm parameter groups, the name's check."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from orchestrator.config import ConfigError, TrialConfig, check
from trainables import optim
from trainables.pretrain import build_optimizer


def test_lars_step_equals_the_trust_ratio_rule_computed_by_hand():
    w0 = torch.tensor([3.0, -4.0])  # ||w|| = 5
    g0 = torch.tensor([0.6, 0.8])  # ||g|| = 1
    lr, momentum, decay, eta = 0.5, 0.9, 0.1, 0.01
    w = nn.Parameter(w0.clone())
    opt = optim.LARS([w], lr=lr, momentum=momentum, weight_decay=decay, trust_coefficient=eta)
    w.grad = g0.clone()
    opt.step()
    local_lr = eta * 5.0 / (1.0 + decay * 5.0)  # eta ||w|| / (||g|| + beta ||w||) = 0.05 / 1.5
    v1 = lr * local_lr * (g0 + decay * w0)
    torch.testing.assert_close(w.detach(), w0 - v1)
    # The second step carries the momentum buffer and recomputes the ratio at the new weights.
    w1 = w.detach().clone()
    w.grad = g0.clone()
    opt.step()
    local_lr = eta * w1.norm() / (g0.norm() + decay * w1.norm())
    v2 = momentum * v1 + lr * local_lr * (g0 + decay * w1)
    torch.testing.assert_close(w.detach(), w1 - v2)


def test_lars_without_adaptation_is_sgd_with_momentum():
    w_lars, w_sgd = nn.Parameter(torch.tensor([1.0, 2.0])), nn.Parameter(torch.tensor([1.0, 2.0]))
    lars = optim.LARS([{"params": [w_lars], "lars_adaptation": False}], lr=0.1, momentum=0.9, weight_decay=0.01)
    sgd = torch.optim.SGD([w_sgd], lr=0.1, momentum=0.9, weight_decay=0.01)
    for grad in (torch.tensor([0.5, -1.0]), torch.tensor([0.2, 0.3])):
        w_lars.grad, w_sgd.grad = grad.clone(), grad.clone()
        lars.step()
        sgd.step()
        torch.testing.assert_close(w_lars.detach(), w_sgd.detach())


def test_bias_and_norm_weights_are_grouped_without_decay_or_lars_adaptation():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(2, 3, 5, 5))
    decayed, excluded = optim.exclude_bias_and_norm(model)
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decayed["params"]) == {id(model[0].weight), id(model[3].weight)}
    assert ids(excluded["params"]) == {id(model[1].weight), id(model[1].bias), id(model[3].bias)}
    assert excluded["weight_decay"] == 0.0 and excluded["lars_adaptation"] is False
    assert "weight_decay" not in decayed  # the trial's decay applies


def test_the_trials_optimizer_is_built_and_the_default_stays_sgd():
    model = nn.Linear(3, 2)
    sgd, _ = build_optimizer(model, TrialConfig())
    assert type(sgd) is torch.optim.SGD and len(sgd.param_groups) == 1
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (0.03, 0.9, 1e-4)
    lars, _ = build_optimizer(model, TrialConfig(optimizer="lars", lr=0.3))
    adamw, _ = build_optimizer(model, TrialConfig(optimizer="adamw", lr=1e-3, weight_decay=0.05))
    assert type(lars) is optim.LARS and lars.defaults["lr"] == 0.3
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["weight_decay"] == 0.05


def test_an_unknown_optimizer_is_a_config_error_before_ray():
    with pytest.raises(ConfigError, match="optimizer='adam' is not one of sgd, lars, adamw"):
        check([TrialConfig().override({"optimizer": "adam"})])
