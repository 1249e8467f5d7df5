"""Linear centered kernel alignment (CKA) between two representations of the same images.

Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network Representations
Revisited" (ICML 2019), the measure Neyshabur, Sedghi & Zhang, "What is being transferred
in transfer learning?" (NeurIPS 2020; its feature-similarity analysis, summarised in
../shared/reference/seeds/002) compare pretrained and randomly initialised networks with.
For representations ``X`` (n x p1) and ``Y`` (n x p2) of the same n samples:

- Kornblith et al. Sec. 4, HSIC (Gretton et al. 2005) of two Gram matrices ``K``, ``L``:
  ``HSIC(K, L) = tr(K H L H) / (n - 1)^2`` with the centring matrix ``H = I - 11^T / n``;
- CKA, the normalised HSIC: ``CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``;
- linear CKA, with ``K = X X^T`` and ``L = Y Y^T``: for column-centred ``X`` and ``Y``
  it equals (Kornblith et al. Sec. 3, the dot-product identity
  ``<vec(X X^T), vec(Y Y^T)> = ||Y^T X||_F^2``)
  ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``.

It lies in [0, 1], is 1 for ``Y = X``, and is invariant to orthogonal transforms and
isotropic scaling of either side, not to a general invertible linear map (Kornblith et
al. Sec. 2.1); tests/test_similarity.py checks each against the HSIC definition computed
with explicit loops.

Computation: ``tr(K H L H) = <H K H, H L H>_F`` (``H`` is symmetric and idempotent), so a
representation is reduced once to its centred Gram matrix ``H X X^T H`` scaled to unit
Frobenius norm (:func:`normalized_centered_gram`, n x n whatever its width), and the CKA of
every pair of layers of two networks is one matrix product of the flattened Grams
(:func:`cka_matrix`). Everything is float64: a Gram of float32 features of a wide layer
loses digits in its sums.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["cka_matrix", "linear_cka", "normalized_centered_gram"]


def normalized_centered_gram(features: np.ndarray) -> np.ndarray:
    """``H X X^T H / ||H X X^T H||_F`` of an n x p representation (rows: samples), in float64.

    ``H X X^T H = Xc Xc^T`` with ``Xc`` the column-centred ``X``. A constant
    representation (a zero centred Gram) is refused: its CKA is 0 / 0.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"a representation must be n x p with n >= 2 samples, got shape {x.shape}")
    x = x - x.mean(axis=0, keepdims=True)
    gram = x @ x.T
    norm = np.linalg.norm(gram)
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("a constant (or non-finite) representation has no CKA: its centred Gram matrix is 0")
    return gram / norm


def cka_matrix(grams_a: Sequence[np.ndarray], grams_b: Sequence[np.ndarray]) -> np.ndarray:
    """Linear CKA of every layer of one network with every layer of another: a
    ``len(grams_a) x len(grams_b)`` matrix, from :func:`normalized_centered_gram` of each
    layer (all on the same n samples in the same order).

    ``CKA = <Kc, Lc>_F / (||Kc||_F ||Lc||_F)``; the Grams are already of unit norm, so it is
    the Frobenius inner product of the flattened Grams.
    """
    a = np.stack([np.asarray(g, np.float64).ravel() for g in grams_a])
    b = np.stack([np.asarray(g, np.float64).ravel() for g in grams_b])
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the Gram matrices are of different sample counts ({a.shape[1]} and {b.shape[1]} entries)")
    return a @ b.T


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations ``x`` (n x p1) and ``y`` (n x p2) of the same n
    samples (row i of each is sample i)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"representations must be n x p of the same n samples, got {x.shape} and {y.shape}")
    return float(cka_matrix([normalized_centered_gram(x)], [normalized_centered_gram(y)])[0, 0])
