"""Top-K Representation Invariance Score (RIS), Purushwalkam & Gupta (NeurIPS 2020).

Sec. 4.1 and Appendix A of the paper: hidden unit ``i`` *fires* on sample ``x`` for target
``y`` when ``s * h_i(x)`` is among the ``m_y`` largest values of ``s * h_i`` over all ``N``
samples, where ``m_y = N * P(y)`` is the number of samples of target ``y`` and the sign
``s`` in ``{+1, -1}`` lets a unit fire on high or on low activations. Then

- ``G_y(i)``: the fraction of all samples on which the unit fires (the global firing
  rate; ``P(y)`` unless values tie at the threshold, in which case every tied sample fires
  and ``G_y(i) > P(y)``),
- ``L_y(i)``: the mean over the local trajectories of target ``y`` of the fraction of the
  trajectory on which the unit fires (Eq. 2),
- ``I_y(i) = L_y(i) / G_y(i)``, the target-conditioned invariance (Sec. 4.1 after Eq. 2,
  with Appendix A's per-target ``G_y``), with the sign ``s`` chosen by one of two rules
  (``sign``):

  * ``"per_unit"`` (the default): Sec. 4.1 says "for each hidden unit, s_i is selected to
    maximize the considered invariance", one ``s_i`` per unit. The invariance of unit ``i``
    under sign ``s`` is taken as ``(1/|Y|) * sum_y I_y(i; s)``: the unweighted mean over
    targets of ``I_y(i; s) = L_y(i; s) / G_y(i; s)``, with ``L_y`` of Eq. 2 (the mean over
    ``y``'s trajectories) and ``G_y`` from ``y``'s own threshold (Appendix A). This is the
    unit's share of Eq. 3's sum over targets (each target weighs ``1/|Y|`` there too,
    Appendix A's "equal importance to samples of each class"). ``I_y`` is not divided by
    its maximum ``1/P(y)`` first, as Eq. 3 does not either, so with unequal target sizes
    the rarer targets weigh more; on balanced sets (ALOI) it makes no difference. A tie
    goes to ``s = +1``.
  * ``"per_target"``: a sign per ``(y, i)``, the larger of ``I_y(i; +1)`` and
    ``I_y(i; -1)``. Appendix A's thresholds are per target, which can be read this way
    too, but a unit may then read as "high" for one target and "low" for another, and
    the score can only rise (it is never below ``"per_unit"``).

  Both are offered so the choice is explicit and logged;
- RIS@K: the mean over targets of the mean of the ``K`` largest ``I_y(i)`` (Eq. 3), as a
  percentage of its maximum, the value when every ``L_y(i) = 1`` and ``G_y(i) = P(y)``.

The direct computation costs ``|Y| * n * N`` (a selection per target, unit and sign).
Here each unit is sorted once; the threshold of target ``y`` only depends on ``m_y``, so
it is read from the sorted column, and tied samples are counted with a batched
``searchsorted``. A sample's firing only matters for its own target (``L_y`` averages over
the samples of ``y``), so the firing matrix is ``N x n`` and ``L = S @ F`` with a sparse
``|Y| x N`` matrix ``S`` of trajectory weights. The cost is ``n * N * log N``.
"""
from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch

__all__ = ["RIS_SIGN_RULES", "representation_invariance_score"]

# How the sign s of Appendix A is chosen: one per unit (Sec. 4.1, the default) or one per
# (target, unit).
RIS_SIGN_RULES = ("per_unit", "per_target")

# Units per chunk: the working memory is a few N x chunk arrays per thread (ALOI,
# N = 72,000, float32: 18 MB each). Below glibc's 32 MB mmap threshold, freed buffers are
# reused instead of mapped and page-faulted afresh, which made 256-unit chunks 20% slower.
_UNITS_PER_CHUNK = 64
# Chunks run in parallel on up to torch's intra-op thread count (which Ray sets per
# worker), capped because each chunk in flight holds its own working memory.
_MAX_THREADS = 4


def representation_invariance_score(
    features, targets, trajectories, top_k: Iterable[int] | int = (10, 25), sign: str = "per_unit"
) -> dict[int, float]:
    """Top-K Representation Invariance Score of a representation, in percent.

    Args:
        features: ``N x n`` activations ``h(x)`` of ``n`` hidden units on ``N`` samples
            (numpy array or torch tensor, any real dtype; must be finite).
        targets: length-``N`` target id ``y`` of each sample (ints, strings, ...).
        trajectories: length-``N`` local-trajectory id of each sample. A trajectory is the
            pair (target, trajectory id), so ids may repeat across targets.
        top_k: the K of each score (one int or several); ``1 <= K <= n``.
        sign: one of :data:`RIS_SIGN_RULES`. ``"per_unit"`` (the paper's Sec. 4.1): one
            sign per unit, the one maximising the unweighted mean over targets of
            ``I_y(i) = L_y(i) / G_y(i)`` (Eq. 2 and Appendix A's thresholds; ties: +1).
            ``"per_target"``: a sign per (target, unit), never a lower score. See the
            module docstring for why.

    Returns:
        ``{K: RIS@K}``, each in ``[0, 100]``; 100 means that for every target, ``K`` units
        fire on exactly the samples of that target (perfectly invariant within every
        trajectory and perfectly discriminative).

    Raises:
        ValueError: on malformed input (shapes, non-finite features, fewer than two
            targets, ``K`` outside ``[1, n]``).
        TypeError: on a non-integer ``K`` or non-numeric features.
    """
    if sign not in RIS_SIGN_RULES:
        raise ValueError(f"sign={sign!r} is not one of {', '.join(RIS_SIGN_RULES)}")
    h = _as_feature_matrix(features)
    num_samples, num_units = h.shape
    ks = _as_top_k(top_k, num_units)
    problem = _Problem.build(targets, trajectories, num_samples)

    # I_y(i) for every target and unit, filled chunk by chunk; threads help because numpy's
    # sort and scipy's sparse product release the GIL.
    # Both signs: s = +1 (fires on high values) and s = -1 (on low values).
    invariance_high = np.empty((problem.num_targets, num_units), dtype=np.float64)
    invariance_low = np.empty((problem.num_targets, num_units), dtype=np.float64)
    starts = range(0, num_units, _UNITS_PER_CHUNK)

    def fill(start: int) -> None:
        stop = min(start + _UNITS_PER_CHUNK, num_units)
        invariance_high[:, start:stop], invariance_low[:, start:stop] = _target_conditioned_invariance(
            h[:, start:stop], problem)

    threads = max(1, min(_MAX_THREADS, torch.get_num_threads(), len(starts)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(fill, starts))

    if sign == "per_target":
        invariance = np.maximum(invariance_high, invariance_low)
    else:  # Sec. 4.1: one s_i per unit, maximising mean_y I_y(i) (Eq. 3's weights; tie: +1)
        high_wins = invariance_high.mean(axis=0) >= invariance_low.mean(axis=0)
        invariance = np.where(high_wins, invariance_high, invariance_low)

    # Eq. 3: per target, the mean of its K largest I_y(i); then the mean over targets.
    # Its maximum (every L_y(i) = 1, G_y(i) = P(y)) is mean_y 1 / P(y) = mean_y N / N_y.
    maximum = float(np.mean(num_samples / problem.target_sizes))
    scores = {}
    for k in ks:
        top = np.partition(invariance, num_units - k, axis=1)[:, num_units - k :]
        scores[k] = float(100.0 * top.mean(axis=1).mean() / maximum)
    return scores


@dataclass(frozen=True)
class _Problem:
    """Targets and trajectories as index arrays, samples grouped by target size ``m_y``."""

    num_targets: int
    target_sizes: np.ndarray  # (|Y|,) N_y = m_y, the samples of each target
    sizes: np.ndarray  # (M,) the distinct values of m_y, ascending
    size_of_target: np.ndarray  # (|Y|,) index into `sizes` of each target
    order: np.ndarray  # (N,) sample permutation that makes each m group contiguous
    group_bounds: np.ndarray  # (M + 1,) group j is order[bounds[j]:bounds[j + 1]]
    weights: scipy.sparse.csr_array  # (|Y|, N) in `order`: S of L = S @ F (Eq. 2)

    @classmethod
    def build(cls, targets, trajectories, num_samples: int) -> _Problem:
        target_index = _as_codes(targets, "targets", num_samples)
        trajectory_code = _as_codes(trajectories, "trajectories", num_samples)
        num_targets = int(target_index.max()) + 1
        if num_targets < 2:
            raise ValueError(
                f"RIS needs at least 2 distinct targets, got {num_targets}: with one target "
                "every unit fires on every sample and the score is meaningless"
            )
        # A trajectory is the pair (target, trajectory id).
        _, trajectory_index = np.unique(
            target_index * (int(trajectory_code.max()) + 1) + trajectory_code,
            return_inverse=True,
        )
        trajectory_sizes = np.bincount(trajectory_index)
        trajectory_target = np.empty(trajectory_sizes.size, dtype=np.int64)
        trajectory_target[trajectory_index] = target_index
        trajectories_per_target = np.bincount(trajectory_target, minlength=num_targets)

        target_sizes = np.bincount(target_index, minlength=num_targets)
        sizes, size_of_target = np.unique(target_sizes, return_inverse=True)
        sample_group = size_of_target[target_index]
        order = np.argsort(sample_group, kind="stable")
        group_bounds = np.searchsorted(sample_group[order], np.arange(sizes.size + 1))

        # Eq. 2 as weights: L_y(i) = sum over samples x of y of f_i(x) / (|T(x)| * #T_y),
        # the mean over the trajectories of y of each trajectory's firing fraction.
        weight = 1.0 / (
            trajectory_sizes[trajectory_index] * trajectories_per_target[target_index]
        )
        weights = scipy.sparse.csr_array(
            (
                weight[order].astype(np.float32),
                (target_index[order], np.arange(num_samples)),
            ),
            shape=(num_targets, num_samples),
        )
        return cls(
            num_targets, target_sizes, sizes, size_of_target, order, group_bounds, weights
        )


def _target_conditioned_invariance(h: np.ndarray, problem: _Problem) -> tuple[np.ndarray, np.ndarray]:
    """``I_y(i) = L_y(i) / G_y(i)`` for a chunk of units ``h`` (N x c), as two |Y| x c
    arrays: with s = +1 and with s = -1."""
    num_samples = h.shape[0]
    grouped = h[problem.order]  # N x c copy, samples of each target size contiguous
    # c x N, one row per unit: torch's blocked transpose is ~5x faster than numpy's here.
    # A copy even when c = 1 (where .contiguous() would alias `grouped`), as it is sorted.
    ascending = torch.from_numpy(grouped).T.clone(memory_format=torch.contiguous_format)
    ascending = ascending.numpy()
    ascending.sort(axis=1)  # numpy's SIMD sort beats torch.sort on CPU

    # Thresholds (Appendix A): for s = +1 the m-th largest value, for s = -1 the m-th
    # smallest (the m-th largest of -h). One per unit and distinct m, shape c x M.
    high = np.ascontiguousarray(ascending[:, num_samples - problem.sizes])
    low = np.ascontiguousarray(ascending[:, problem.sizes - 1])

    # G_y(i): every sample tied with the threshold fires too; count them in the sorted row.
    rows = torch.from_numpy(ascending)
    fires_high = num_samples - torch.searchsorted(rows, torch.from_numpy(high), side="left")
    fires_low = torch.searchsorted(rows, torch.from_numpy(low), side="right")
    global_high = fires_high.numpy()[:, problem.size_of_target].T / num_samples  # |Y| x c
    global_low = fires_low.numpy()[:, problem.size_of_target].T / num_samples

    # f_i(x) for x's own target only; targets of one size share their threshold.
    firing_high = np.empty(grouped.shape, dtype=np.float32)
    firing_low = np.empty(grouped.shape, dtype=np.float32)
    for j in range(problem.sizes.size):
        block = slice(problem.group_bounds[j], problem.group_bounds[j + 1])
        np.greater_equal(grouped[block], high[:, j], out=firing_high[block])
        np.less_equal(grouped[block], low[:, j], out=firing_low[block])

    # Eq. 2: L = S @ F; then I_y(i) = L_y(i) / G_y(i) for each sign.
    local_high = problem.weights @ firing_high
    local_low = problem.weights @ firing_low
    return local_high / global_high, local_low / global_low


def _as_feature_matrix(features) -> np.ndarray:
    """``features`` as a finite N x n numpy array, float32 or float64 (never rounded)."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu()
        if features.dtype not in (torch.float32, torch.float64):
            features = features.to(torch.float64)
        features = features.numpy()
    h = np.asarray(features)
    if h.dtype == bool or not (
        np.issubdtype(h.dtype, np.integer) or np.issubdtype(h.dtype, np.floating)
    ):
        raise TypeError(f"features must be a real-valued array, got dtype {h.dtype}")
    if h.ndim != 2:
        raise ValueError(f"features must be 2-D (samples x units), got shape {h.shape}")
    if h.shape[0] < 2 or h.shape[1] < 1:
        raise ValueError(f"features need at least 2 samples and 1 unit, got shape {h.shape}")
    # float16 and float32 sort identically as float32; everything else as float64.
    h = h.astype(np.float32 if h.dtype.itemsize <= 4 and h.dtype.kind == "f" else np.float64,
                 copy=False)
    finite = np.isfinite(h)
    if not finite.all():
        bad = np.argwhere(~finite)
        raise ValueError(
            f"features contain {len(bad)} non-finite values (NaN or inf), "
            f"the first at sample {bad[0][0]}, unit {bad[0][1]}"
        )
    return h


def _as_codes(ids, name: str, num_samples: int) -> np.ndarray:
    """Integer codes ``0..k-1`` of a length-N array of ids."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.shape[0] != num_samples:
        raise ValueError(
            f"{name} must be a 1-D array with one id per sample ({num_samples}), "
            f"got shape {ids.shape}"
        )
    if ids.dtype.kind == "f" and not np.isfinite(ids).all():
        raise ValueError(f"{name} contain non-finite ids")
    try:
        _, codes = np.unique(ids, return_inverse=True)
    except TypeError as error:
        raise ValueError(f"{name} must be mutually comparable ids: {error}") from error
    return codes.reshape(-1).astype(np.int64, copy=False)


def _as_top_k(top_k, num_units: int) -> list[int]:
    """The K values, each an int in ``[1, n]``."""
    ks = [top_k] if isinstance(top_k, (int, np.integer)) else list(top_k)
    if not ks:
        raise ValueError("top_k must name at least one K")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"top_k values must be integers, got {k!r}")
        if not 1 <= k <= num_units:
            raise ValueError(
                f"top_k value {k} is outside [1, {num_units}] (the representation has "
                f"{num_units} units)"
            )
    return [int(k) for k in ks]
