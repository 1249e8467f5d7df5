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


def _rank_loss(rank: int, world_size: int, store: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        z1, z2 = _global_views()
        half = slice(2 * rank, 2 * rank + 2)  # each rank holds 2 of the 4 images
        z1, z2 = z1[half].clone().requires_grad_(), z2[half].clone().requires_grad_()
        loss = global_nt_xent(z1, z2, 0.5)
        (loss / world_size).backward()  # DDP's mean over ranks
        torch.save({"loss": loss.detach(), "grad1": z1.grad, "grad2": z2.grad}, f"{out_dir}/rank{rank}.pt")
    finally:
        # Every rank's collectives done before teardown: a rank that destroyed its group
        # while the other was still in one aborted it (SIGABRT, seen once in CI).
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _global_views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return tuple(F.normalize(torch.randn(4, 5, generator=g), dim=1) for _ in range(2))


def test_two_ranks_contrast_against_the_global_batch_as_one_worker_would(tmp_path):
    torch.multiprocessing.spawn(_rank_loss, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    z1, z2 = (z.clone().requires_grad_() for z in _global_views())
    loss = global_nt_xent(z1, z2, 0.5)  # one worker holding all 4 images
    loss.backward()
    # Each rank's negatives are the global batch's: the mean of the ranks' losses is the loss,
    # and the gradients that flowed back through the gather are the one-worker gradients.
    assert ((ranks[0]["loss"] + ranks[1]["loss"]) / 2).item() == pytest.approx(loss.item(), rel=1e-5)
    torch.testing.assert_close(torch.cat([ranks[0]["grad1"], ranks[1]["grad1"]]), z1.grad)
    torch.testing.assert_close(torch.cat([ranks[0]["grad2"], ranks[1]["grad2"]]), z2.grad)
