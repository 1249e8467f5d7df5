"""The all-gather that carries gradients (SimCLR's global batch), alone and over two gloo ranks."""
from __future__ import annotations

import torch

from trainables.distributed import gather_with_grad

SIZES = (3, 2)  # rank 0 and rank 1 hold batches of different lengths (padding is exercised)


def _weights(rank: int) -> torch.Tensor:
    """The weights of rank `rank`'s loss sum(w * gathered), one row per global sample."""
    return torch.arange(sum(SIZES) * 2, dtype=torch.float32).reshape(-1, 2) * (rank + 1)


def _local(rank: int) -> torch.Tensor:
    return torch.full((SIZES[rank], 2), float(rank + 1), requires_grad=True)


def test_without_a_process_group_the_gather_is_the_identity_and_keeps_the_gradient():
    t = torch.randn(3, 2, requires_grad=True)
    gathered, sizes = gather_with_grad(t)
    assert sizes == [3] and gathered is t
    (gathered * 2).sum().backward()
    torch.testing.assert_close(t.grad, torch.full((3, 2), 2.0))


def _gather_and_backward(rank: int, world_size: int, store: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        t = _local(rank)
        gathered, sizes = gather_with_grad(t)
        (gathered * _weights(rank)).sum().backward()
        torch.save({"gathered": gathered.detach(), "sizes": sizes, "grad": t.grad}, f"{out_dir}/rank{rank}.pt")
    finally:
        # Every rank's collectives done before teardown: a rank that destroyed its group
        # while the other was still in one aborted it (SIGABRT, seen once in CI).
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def test_two_ranks_gather_in_rank_order_and_each_gets_the_sum_of_all_losses_gradients(tmp_path):
    torch.multiprocessing.spawn(_gather_and_backward, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    expected = torch.cat([_local(0), _local(1)]).detach()
    total_weights = _weights(0) + _weights(1)  # d(loss_0 + loss_1) / d(gathered)
    for rank, result in enumerate(results):
        assert result["sizes"] == list(SIZES)
        torch.testing.assert_close(result["gathered"], expected)
        start = sum(SIZES[:rank])
        torch.testing.assert_close(result["grad"], total_weights[start:start + SIZES[rank]])
