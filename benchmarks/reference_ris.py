"""The Top-K Representation Invariance Score written out plainly, one target at a time.

A readable transcription of Sec. 4.1 and Appendix A of Purushwalkam & Gupta (NeurIPS
2020), used by the tests as the ground truth for ``trainables.invariance`` and by the
benchmark as its baseline. It costs ``|Y| * n * N log N``: for every target and sign it
sorts every unit again, because the threshold depends on the target's size; and it walks
Eq. 2 sample by sample, as written.
"""
from __future__ import annotations

import numpy as np

__all__ = ["reference_ris", "target_invariance"]


def target_invariance(units: np.ndarray, in_target: np.ndarray, trajectories: list[np.ndarray],
                      local_rate: str = "eq2", weighting: str = "sample") -> tuple[np.ndarray, np.ndarray]:
    """``I_y(i)`` of every unit for one target ``y``, with s = +1 and with s = -1.

    Args:
        units: ``n x N`` activations, one row per unit.
        in_target: length-``N`` boolean mask of the samples of ``y``.
        trajectories: the sample indices of each local trajectory of ``y``.
        local_rate, weighting: as in ``trainables.invariance``.
    """
    num_samples = units.shape[1]
    m = int(in_target.sum())  # the unit should fire on m = N * P(y) samples
    trajectory_of = {int(x): t for t in trajectories for x in t}  # T(z) of each sample z of y
    per_sign = []
    for sign in (1.0, -1.0):
        signed = sign * units
        # Appendix A: the threshold is the m-th largest value of s * h_i; every sample at
        # or above it fires, ties included.
        threshold = np.sort(signed, axis=1)[:, num_samples - m]
        fires = signed >= threshold[:, None]
        global_rate = fires.mean(axis=1)  # G_y(i)
        local = np.zeros(units.shape[0])
        for i in range(units.shape[0]):
            if local_rate == "eq2" and weighting == "sample":
                # Eq. 2: 1/|X_y| sum_z 1/|T(z)| sum_{x in T(z)} f(x)
                local[i] = np.mean([fires[i, trajectory_of[z]].mean() for z in trajectory_of])
            elif local_rate == "eq2":  # every trajectory alike
                local[i] = np.mean([fires[i, t].mean() for t in trajectories])
            else:  # Goodfellow et al. 2009: over the references z that fire
                weights = {z: 1.0 if weighting == "sample" else 1.0 / len(trajectory_of[z])
                           for z in trajectory_of if fires[i, z]}
                if weights:
                    local[i] = sum(w * fires[i, trajectory_of[z]].mean() for z, w in weights.items()) / sum(
                        weights.values())
        per_sign.append(local / global_rate)  # I_y(i) with this sign
    return per_sign[0], per_sign[1]


def reference_ris(features, targets, trajectories, top_k=(10, 25), sign="per_target", local_rate="eq2",
                  weighting="sample") -> dict[int, float]:
    """RIS@K in percent, same contract as ``representation_invariance_score``.

    ``sign="per_target"``: the larger ``I_y(i)`` per target; ``"per_unit_max"``: one sign
    per unit, the one whose targets' shares ``I_y(i) P(y)``, best first, are larger at the
    first place they differ by more than a relative 1e-9 (a full tie: +1).
    """
    h = np.asarray(features)
    if h.dtype != np.float32:  # float32 compares exactly as itself; the rest as float64
        h = h.astype(np.float64)
    targets = np.asarray(targets)
    trajectories = np.asarray(trajectories)
    units = np.ascontiguousarray(h.T)
    num_samples, num_units = h.shape
    ks = [top_k] if isinstance(top_k, int) else list(top_k)

    high, low = [], []  # one row of I_y(i) per target, for each sign
    maximum = []  # the largest possible I_y(i), 1 / P(y)
    for y in np.unique(targets):
        in_target = targets == y
        trajectory_ids = np.unique(trajectories[in_target])
        members = [np.flatnonzero(in_target & (trajectories == t)) for t in trajectory_ids]
        row_high, row_low = target_invariance(units, in_target, members, local_rate, weighting)
        high.append(row_high)
        low.append(row_low)
        maximum.append(num_samples / in_target.sum())
    high, low = np.array(high), np.array(low)
    if sign == "per_target":
        invariance = np.maximum(high, low)
    else:
        invariance = np.empty_like(high)
        share = 1.0 / np.array(maximum)  # P(y)
        for i in range(num_units):
            use_high = True
            for a, b in zip(sorted(high[:, i] * share, reverse=True), sorted(low[:, i] * share, reverse=True)):
                if abs(a - b) > 1e-9 * max(1.0, abs(a), abs(b)):
                    use_high = a > b
                    break
            invariance[:, i] = high[:, i] if use_high else low[:, i]

    # Eq. 3: mean over targets of the mean of the K largest I_y(i), as a percentage of
    # its value when every L_y(i) = 1 and G_y(i) = P(y).
    scores = {}
    for k in ks:
        per_target = [np.sort(row)[::-1][:k].mean() for row in invariance]
        scores[k] = float(100.0 * np.mean(per_target) / np.mean(maximum))
    return scores
