"""Contrastive losses."""
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
