"""SimCLR: NT-Xent against an explicit computation, the method's step on one worker, its settings."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from orchestrator.config import ConfigError, TrialConfig, check
from trainables.losses import nt_xent
from trainables.methods.simclr import SimCLRModel, global_nt_xent


def explicit_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """SimCLR Eq. 1 as a loop: views 0..N-1 are z1, N..2N-1 are z2; mean over all 2N anchors."""
    z = torch.cat([z1, z2]).tolist()
    n = len(z) // 2
    cos = lambda a, b: sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))  # noqa: E731
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denominator = sum(math.exp(cos(z[i], z[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(cos(z[i], z[j]) / tau) / denominator)
    return total / (2 * n)


def test_nt_xent_equals_the_explicit_loop_of_eq_1():
    g = torch.Generator().manual_seed(0)
    z1, z2 = (F.normalize(torch.randn(3, 4, generator=g), dim=1) for _ in range(2))
    own = torch.arange(3)
    loss = nt_xent(torch.cat([z1, z2]), torch.cat([z1, z2]), positive_index=torch.cat([own + 3, own]),
                   self_index=torch.cat([own, own + 3]), temperature=0.5)
    assert loss.item() == pytest.approx(explicit_nt_xent(z1, z2, 0.5), rel=1e-5)
    # One worker: the global loss is the same; and it falls as the views agree.
    assert global_nt_xent(z1, z2, 0.5).item() == pytest.approx(loss.item(), rel=1e-6)
    assert global_nt_xent(z1, z1, 0.5).item() < loss.item()


def test_the_step_is_nt_xent_of_the_projected_views_and_trains_the_whole_encoder():
    trial = TrialConfig().override({"method": "simclr", "method.dim": 8, "method.temperature": 0.2})
    torch.manual_seed(0)
    model = trial.method.build_model(trial)
    assert isinstance(model, SimCLRModel) and trial.method.backbone(model) is model.encoder.backbone
    x1, x2 = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    out = trial.method.training_step(model, (x1, x2), torch.zeros(4))
    with torch.no_grad():  # both views in one batch, as the model does (batch norm sees both)
        z = F.normalize(model.encoder(torch.cat([x1, x2])), dim=1)
    assert out.loss.item() == pytest.approx(explicit_nt_xent(z[:4], z[4:], 0.2), rel=1e-4)
    assert out.metrics["positive_similarity"].item() == pytest.approx((z[:4] * z[4:]).sum(1).mean().item(), rel=1e-4)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    # LARS/weight decay groups: batch norm and biases apart.
    decayed, excluded = trial.method.parameter_groups(model, trial)
    assert len(decayed["params"]) + len(excluded["params"]) == len(list(model.parameters()))


def test_simclr_settings_are_checked_before_ray():
    assert TrialConfig().override({"method": "simclr", "optimizer": "lars"}).problems() == []
    with pytest.raises(ConfigError, match="method.temperature=0.0 must be positive"):
        check([TrialConfig().override({"method": "simclr", "method.temperature": 0})])
    with pytest.raises(ConfigError, match="unknown trial config key 'method.queue_size'"):
        TrialConfig().override({"method": "simclr", "method.queue_size": 64})
