"""The methods' losses, one per paper, each citing its equation."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE of MoCo: each query against its positive key and the queued negatives.

    Args:
        q: N x C L2-normalised queries.
        k: N x C L2-normalised positive keys (no gradient expected).
        queue: C x K L2-normalised negative keys.
        temperature: tau.

    Returns:
        The mean loss over the N queries and the N x (1 + K) logits (already divided by
        tau), positives in column 0.
    """
    if q.shape != k.shape or q.shape[1] != queue.shape[0]:
        raise ValueError(f"shape mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, queue {tuple(queue.shape)}")
    # Paper Eq. 1 with its positive pair (x, x+) = (query, key) and the K queued keys as
    # the negatives x-. Eq. 1 as printed omits the log; Algorithm 1 (and MoCo) take the
    # cross-entropy of the logits with target 0, i.e. -log of that ratio, averaged over
    # the batch. That is what this computes.
    l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(1)
    l_neg = q @ queue
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels), logits


def nt_xent(queries: torch.Tensor, keys: torch.Tensor, positive_index: torch.Tensor, self_index: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020, Eq. 1), averaged over the queries.

    Args:
        queries: M x C L2-normalised embeddings z_i (this worker's views).
        keys: K x C L2-normalised embeddings z_k of every view of the (global) batch,
            the queries among them.
        positive_index: M, the row of keys holding each query's other view z_j.
        self_index: M, the row of keys holding the query itself (left out: k != i).
        temperature: tau.
    """
    # Eq. 1: l(i, j) = -log exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau),
    # sim the cosine; Algorithm 1 averages it over both orders of every positive pair,
    # which is the mean over all 2N views as queries. A cross-entropy over the row of
    # logits with the query's own column masked out, target the positive's column.
    logits = queries @ keys.T / temperature
    rows = torch.arange(queries.shape[0], device=queries.device)
    logits = logits.index_put((rows, self_index), torch.tensor(float("-inf"), device=logits.device))
    return F.cross_entropy(logits, positive_index)
