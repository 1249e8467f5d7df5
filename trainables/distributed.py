"""torch.distributed helpers that degrade to the identity on one worker.

Training must run with one worker and no process group (a laptop, Ray Train local
mode) as well as with DDP over gloo (CPUs) or NCCL (GPUs). Every helper here checks
for an initialised process group with more than one rank and is a no-op otherwise.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def _batch_sizes(t: torch.Tensor) -> list[int]:
    """Every rank's length of `t` along dim 0, in rank order."""
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    return [int(s.item()) for s in sizes]


def gather_with_sizes(t: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """All ranks' `t` concatenated along dim 0 in rank order, and each rank's length.

    Lengths may differ between ranks (a batch that lost corrupt images is shorter), so
    the lengths are exchanged first and every rank pads to the longest before
    `all_gather`. No gradient flows through the result.
    """
    if not is_distributed():
        return t, [t.shape[0]]
    sizes = _batch_sizes(t)
    padded = t.new_zeros((max(sizes), *t.shape[1:]))
    padded[: t.shape[0]] = t
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([g[:s] for g, s in zip(gathered, sizes)]), sizes


def gather_with_grad(t: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """:func:`gather_with_sizes` through which gradients flow back to every rank's `t`.

    The loss of each rank then depends on all ranks' embeddings (SimCLR's negatives over
    the global batch): the backward of the gather sums each rank's gradient with respect
    to the gathered copy of `t` into `t`'s gradient (torch.distributed.nn's all_gather).
    DDP then averages the parameter gradients, which gives the gradient of the mean of the
    ranks' losses.
    """
    if not is_distributed():
        return t, [t.shape[0]]
    from torch.distributed.nn.functional import all_gather

    sizes = _batch_sizes(t)
    padded = torch.cat([t, t.new_zeros((max(sizes) - t.shape[0], *t.shape[1:]))])
    gathered = all_gather(padded)
    return torch.cat([g[:s] for g, s in zip(gathered, sizes)]), sizes


def broadcast_from_rank0(t: torch.Tensor) -> torch.Tensor:
    """Overwrite `t` on every rank with rank 0's value (in place) and return it."""
    if is_distributed():
        dist.broadcast(t, src=0)
    return t


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce `t` over ranks in place (`op` is "sum", "max" or "min") and return it."""
    if is_distributed():
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return t
