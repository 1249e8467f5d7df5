"""Top-K Representation Invariance Score (RIS), Purushwalkam & Gupta (NeurIPS 2020).

Sec. 4.1 and Appendix A of the paper: hidden unit ``i`` *fires* on sample ``x`` for target
``y`` when ``s * h_i(x)`` is among the ``m_y`` largest values of ``s * h_i`` over all ``N``
samples, where ``m_y = N * P(y)`` is the number of samples of target ``y`` and the sign
``s`` in ``{+1, -1}`` lets a unit fire on high or on low activations. Then

- ``G_y(i)``: the fraction of all samples on which the unit fires (the global firing
  rate; ``P(y)`` unless values tie at the threshold, in which case every tied sample fires
  and ``G_y(i) > P(y)``),
- ``L_y(i)``: the local firing rate of target ``y``, in one of two readings
  (``local_rate``), each with one of two weightings (``weighting``):

  * ``"eq2"`` (the default), Eq. 2: ``L_y = 1/|X_y| sum_{z in X_y} 1/|T(z)| sum_{x in T(z)}
    f(x)``. With ``weighting="sample"`` (the default, Eq. 2 as written) every sample of
    ``y`` weighs ``1/|X_y|``: when trajectories partition ``X_y`` this is the fraction of
    ``y``'s samples on which the unit fires, whatever the grouping. So under Eq. 2 a
    target must vary only in the factor its set names (``datasets.invariance_sets``);
    ``weighting="trajectory"`` averages each trajectory's firing fraction instead (every
    trajectory weighs the same; it differs from Eq. 2 when trajectories have unequal
    sizes).
  * ``"reference"``: Goodfellow et al. 2009 (the paper's [26]) condition the local rate on
    the reference input firing: the mean, over the samples ``z`` of ``y`` on which the
    unit fires, of the fraction of ``z``'s trajectory ``T(z)`` (``z`` included, as in
    Sec. 4.1's ``T(x) = {t(x, gamma)}``) on which it fires. Here the trajectories matter:
    a unit that fires on whole trajectories scores 1, one that fires on scattered samples
    of ``y`` less. ``weighting="trajectory"`` weighs each reference ``1/|T(z)|``. A
    reference alone in its trajectory always scores 1 (sets keep trajectories of >= 2).
    Where the unit fires on no sample of ``y``, ``L_y = 0``.

  With one trajectory per target (ALOI, GOT-10k by sequence) all four agree.
- ``I_y(i) = L_y(i) / G_y(i)``, the target-conditioned invariance (Sec. 4.1 after Eq. 2,
  with Appendix A's per-target ``G_y``), with the sign ``s`` chosen by one of two rules
  (``sign``):

  * ``"per_target"`` (the default): a sign per ``(y, i)``, the larger of ``I_y(i; +1)``
    and ``I_y(i; -1)``. Appendix A makes firing target-conditioned (a threshold per
    target) and picks the top-K units "for each class separately"; Sec. 4.1 selects the
    sign "to maximize the considered invariance". The considered invariance of unit ``i``
    for target ``y`` is ``I_y(i)``, so the sign is chosen where the threshold is: per
    target. It is the only reading in which every term of Eq. 3 is at its maximum.
  * ``"per_unit_max"``: one sign per unit, the one under which the unit's best target
    reaches the larger share of its maximum ``I_y(i) P(y)`` (then the second best, and
    so on; a full tie goes to ``+1``). A unit enters Eq. 3 only through the targets whose
    top-K it reaches, so its best targets are what its sign decides; shares, not raw
    ``I_y``, because a small target's ``I_y`` can reach ``1 / P(y)`` and would otherwise
    outbid a unit perfect on a large one. Shares are compared with a relative tolerance
    of ``SIGN_TIE_TOLERANCE`` so rounding never decides a sign.

  The rule this module offered before, one sign per unit maximising the mean over targets
  of ``I_y(i)``, carries no information on balanced sets: with one threshold per target
  size the unit fires on ``m`` samples in all, so ``sum_y |X_y| L_y(i) = m`` and
  ``mean_y I_y(i) = 1`` for every unit and both signs; every unit tied and rounding chose
  its sign. It is refused with that explanation (``RETIRED_SIGN_RULES``);
- RIS@K: the mean over targets of the mean of the ``K`` largest ``I_y(i)`` (Eq. 3), as a
  percentage of its maximum, the value when every ``L_y(i) = 1`` and ``G_y(i) = P(y)``.

Every rule and reading gives the same score under a change that leaves Eq. 2-3 unchanged:
samples reordered or all duplicated, a unit mapped by a positive affine map, float32
features as float64 (tests/test_invariance.py).

The direct computation costs ``|Y| * n * N`` (a selection per target, unit and sign).
Here each unit is sorted once; the threshold of target ``y`` only depends on ``m_y``, so
it is read from the sorted column, and tied samples are counted with a batched
``searchsorted``. A sample's firing only matters for its own target, so the firing
matrix is ``N x n``; per trajectory firing counts are ``C = P @ F`` with a sparse
trajectory-membership matrix ``P``, exact integers in float32, and both readings are small
products of ``C``. The cost is ``n * N * log N``.
"""
from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch

__all__ = [
    "RETIRED_SIGN_RULES",
    "RIS_LOCAL_RATES",
    "RIS_SIGN_RULES",
    "RIS_WEIGHTINGS",
    "SIGN_TIE_TOLERANCE",
    "check_ris_options",
    "representation_invariance_score",
    "target_conditioned_invariance",
]

# How the sign s of Sec. 4.1 is chosen (the first is the default): see the module docstring.
RIS_SIGN_RULES = ("per_target", "per_unit_max")
# Sign rules that were offered once and are refused now, with the reason.
RETIRED_SIGN_RULES = {
    "per_unit": "its criterion, the mean over targets of I_y(i), is 1 for every unit and "
    "both signs on balanced sets (sum_y |X_y| L_y(i) = m), so rounding chose the sign",
}
# The local firing rate L_y(i): Eq. 2 as written, or conditioned on the reference firing
# (Goodfellow et al. 2009). And how samples weigh in it.
RIS_LOCAL_RATES = ("eq2", "reference")
RIS_WEIGHTINGS = ("sample", "trajectory")
# Relative difference below which two I_y values count as equal when a sign is chosen per
# unit: far above float64 rounding (1e-16), far below any difference a set of realistic
# size can produce between distinct firing fractions.
SIGN_TIE_TOLERANCE = 1e-9

# Units per chunk: the working memory is a few N x chunk arrays per thread (ALOI,
# N = 72,000, float32: 18 MB each). Below glibc's 32 MB mmap threshold, freed buffers are
# reused instead of mapped and page-faulted afresh, which made 256-unit chunks 20% slower.
_UNITS_PER_CHUNK = 64
# Chunks run in parallel on up to torch's intra-op thread count (which Ray sets per
# worker), capped because each chunk in flight holds its own working memory.
_MAX_THREADS = 4


def check_ris_options(sign: str, local_rate: str, weighting: str) -> list[str]:
    """What is wrong with a choice of sign rule, local-rate reading and weighting."""
    out = []
    if sign in RETIRED_SIGN_RULES:
        out.append(f"sign={sign!r} was removed: {RETIRED_SIGN_RULES[sign]}; use one of "
                    f"{', '.join(RIS_SIGN_RULES)}")
    elif sign not in RIS_SIGN_RULES:
        out.append(f"sign={sign!r} is not one of {', '.join(RIS_SIGN_RULES)}")
    if local_rate not in RIS_LOCAL_RATES:
        out.append(f"local_rate={local_rate!r} is not one of {', '.join(RIS_LOCAL_RATES)}")
    if weighting not in RIS_WEIGHTINGS:
        out.append(f"weighting={weighting!r} is not one of {', '.join(RIS_WEIGHTINGS)}")
    return out


def representation_invariance_score(
    features, targets, trajectories, top_k: Iterable[int] | int = (10, 25), sign: str = "per_target",
    local_rate: str = "eq2", weighting: str = "sample",
) -> dict[int, float]:
    """Top-K Representation Invariance Score of a representation, in percent.

    Args:
        features: ``N x n`` activations ``h(x)`` of ``n`` hidden units on ``N`` samples
            (numpy array or torch tensor, any real dtype; must be finite).
        targets: length-``N`` target id ``y`` of each sample (ints, strings, ...).
        trajectories: length-``N`` local-trajectory id of each sample. A trajectory is the
            pair (target, trajectory id), so ids may repeat across targets.
        top_k: the K of each score (one int or several); ``1 <= K <= n``.
        sign: one of :data:`RIS_SIGN_RULES` (default ``"per_target"``).
        local_rate: one of :data:`RIS_LOCAL_RATES` (default ``"eq2"``).
        weighting: one of :data:`RIS_WEIGHTINGS` (default ``"sample"``, Eq. 2's).
        See the module docstring for what each choice means and why.

    Returns:
        ``{K: RIS@K}``, each in ``[0, 100]``; 100 means that for every target, ``K`` units
        fire on exactly the samples of that target (perfectly invariant within every
        trajectory and perfectly discriminative).

    Raises:
        ValueError: on malformed input (shapes, non-finite features, fewer than two
            targets, ``K`` outside ``[1, n]``, an unknown option).
        TypeError: on a non-integer ``K`` or non-numeric features.
    """
    problems = check_ris_options(sign, local_rate, weighting)
    if problems:
        raise ValueError("; ".join(problems))
    h = _as_feature_matrix(features)
    ks = _as_top_k(top_k, h.shape[1])
    invariance_high, invariance_low, share = _invariance(h, targets, trajectories, local_rate, weighting)

    if sign == "per_target":  # the better sign for each (target, unit)
        invariance = np.maximum(invariance_high, invariance_low)
    else:  # one sign per unit: the one whose best targets reach more of their maximum
        high_wins = _high_sign_wins(invariance_high * share, invariance_low * share)
        invariance = np.where(high_wins, invariance_high, invariance_low)

    # Eq. 3: per target, the mean of its K largest I_y(i); then the mean over targets, as a
    # percentage of its maximum (every L_y(i) = 1, G_y(i) = P(y)): mean_y N / N_y.
    num_units = h.shape[1]
    maximum = float(np.mean(1.0 / share))
    scores = {}
    for k in ks:
        top = np.partition(invariance, num_units - k, axis=1)[:, num_units - k :]
        scores[k] = float(100.0 * top.mean(axis=1).mean() / maximum)
    return scores


def target_conditioned_invariance(
    features, targets, trajectories, local_rate: str = "eq2", weighting: str = "sample",
) -> tuple[np.ndarray, np.ndarray]:
    """``I_y(i)`` for every target (rows, in sorted id order) and unit (columns), with
    ``s = +1`` and with ``s = -1``: the terms Eq. 3 selects from, for analyses and tests."""
    problems = check_ris_options(RIS_SIGN_RULES[0], local_rate, weighting)
    if problems:
        raise ValueError("; ".join(problems))
    high, low, _ = _invariance(_as_feature_matrix(features), targets, trajectories, local_rate, weighting)
    return high, low


def _invariance(h: np.ndarray, targets, trajectories, local_rate: str,
                weighting: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both signs' ``|Y| x n`` arrays of ``I_y(i)``, chunk by chunk, and each target's
    ``P(y)`` (|Y| x 1), the inverse of its largest possible ``I_y``."""
    num_samples, num_units = h.shape
    problem = _Problem.build(targets, trajectories, num_samples, local_rate, weighting)
    invariance_high = np.empty((problem.num_targets, num_units), dtype=np.float64)
    invariance_low = np.empty((problem.num_targets, num_units), dtype=np.float64)
    starts = range(0, num_units, _UNITS_PER_CHUNK)

    # Threads help because numpy's sort and scipy's sparse product release the GIL.
    def fill(start: int) -> None:
        stop = min(start + _UNITS_PER_CHUNK, num_units)
        invariance_high[:, start:stop], invariance_low[:, start:stop] = _chunk_invariance(
            h[:, start:stop], problem)

    threads = max(1, min(_MAX_THREADS, torch.get_num_threads(), len(starts)))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(fill, starts))
    return invariance_high, invariance_low, (problem.target_sizes / num_samples)[:, None]


def _high_sign_wins(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Per unit: does ``s = +1`` win under ``"per_unit_max"``? Each unit's shares
    ``I_y P(y)`` (|Y| x n, one array per sign), sorted from its best target down, are compared in order; the first difference larger
    than the tolerance decides, and a unit with none keeps ``+1``."""
    best_high = -np.sort(-high, axis=0)
    best_low = -np.sort(-low, axis=0)
    difference = best_high - best_low
    scale = np.maximum(1.0, np.maximum(np.abs(best_high), np.abs(best_low)))
    decisive = np.abs(difference) > SIGN_TIE_TOLERANCE * scale
    first = decisive.argmax(axis=0)
    decided = difference[first, np.arange(high.shape[1])]
    return ~decisive.any(axis=0) | (decided > 0)


@dataclass(frozen=True)
class _Problem:
    """Targets and trajectories as index arrays, samples grouped by target size ``m_y``."""

    num_targets: int
    target_sizes: np.ndarray  # (|Y|,) N_y = m_y, the samples of each target
    sizes: np.ndarray  # (M,) the distinct values of m_y, ascending
    size_of_target: np.ndarray  # (|Y|,) index into `sizes` of each target
    order: np.ndarray  # (N,) sample permutation that makes each m group contiguous
    group_bounds: np.ndarray  # (M + 1,) group j is order[bounds[j]:bounds[j + 1]]
    membership: scipy.sparse.csr_array  # (#T, N) in `order`: 1 where the sample is in T
    local_rate: str
    trajectory_weight: np.ndarray  # (#T, 1): Eq. 2's weight of a firing count (eq2) or of a reference
    trajectory_fraction: np.ndarray  # (#T, 1): 1 / |T|
    target_of: scipy.sparse.csr_array  # (|Y|, #T): 1 where T belongs to y

    @classmethod
    def build(cls, targets, trajectories, num_samples: int, local_rate: str, weighting: str) -> _Problem:
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
        trajectory_index = trajectory_index.reshape(-1)
        num_trajectories = int(trajectory_index.max()) + 1
        trajectory_sizes = np.bincount(trajectory_index).astype(np.float64)
        trajectory_target = np.empty(num_trajectories, dtype=np.int64)
        trajectory_target[trajectory_index] = target_index
        trajectories_per_target = np.bincount(trajectory_target, minlength=num_targets)

        target_sizes = np.bincount(target_index, minlength=num_targets)
        sizes, size_of_target = np.unique(target_sizes, return_inverse=True)
        sample_group = size_of_target[target_index]
        order = np.argsort(sample_group, kind="stable")
        group_bounds = np.searchsorted(sample_group[order], np.arange(sizes.size + 1))

        membership = scipy.sparse.csr_array(
            (np.ones(num_samples, dtype=np.float32), (trajectory_index[order], np.arange(num_samples))),
            shape=(num_trajectories, num_samples),
        )
        if local_rate == "eq2":
            # Eq. 2 as a weight per firing count c_T: L_y = sum_T w_T c_T with w_T = 1 / |X_y|
            # (every sample of y alike), or 1 / (|T| #T_y) (every trajectory alike).
            weight = (1.0 / target_sizes[trajectory_target] if weighting == "sample"
                      else 1.0 / (trajectory_sizes * trajectories_per_target[trajectory_target]))
        else:
            # Each firing reference z weighs 1 (sample) or 1 / |T(z)| (trajectory).
            weight = np.ones(num_trajectories) if weighting == "sample" else 1.0 / trajectory_sizes
        target_of = scipy.sparse.csr_array(
            (np.ones(num_trajectories), (trajectory_target, np.arange(num_trajectories))),
            shape=(num_targets, num_trajectories),
        )
        return cls(num_targets, target_sizes, sizes, size_of_target, order, group_bounds, membership,
                   local_rate, weight[:, None], (1.0 / trajectory_sizes)[:, None], target_of)

    def local_rates(self, counts: np.ndarray) -> np.ndarray:
        """``L_y(i)`` (|Y| x c) from the firing counts ``c_T`` of every trajectory (#T x c)."""
        if self.local_rate == "eq2":
            return self.target_of @ (self.trajectory_weight * counts)  # Eq. 2
        # Goodfellow et al.: sum over firing references z of w_z * c_T(z) / |T(z)|, over
        # sum of w_z. Per trajectory the c_T references that fire share that fraction.
        fired = self.trajectory_weight * counts
        numerator = self.target_of @ (fired * counts * self.trajectory_fraction)
        denominator = self.target_of @ fired
        return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _chunk_invariance(h: np.ndarray, problem: _Problem) -> tuple[np.ndarray, np.ndarray]:
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

    # Firing counts per trajectory (exact: integers below 2^24 in float32), then Eq. 2
    # or the reference reading, then I_y(i) = L_y(i) / G_y(i) for each sign.
    counts_high = (problem.membership @ firing_high).astype(np.float64)
    counts_low = (problem.membership @ firing_low).astype(np.float64)
    return problem.local_rates(counts_high) / global_high, problem.local_rates(counts_low) / global_low


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
