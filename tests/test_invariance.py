"""Top-K Representation Invariance Score (Sec. 4.1, Eq. 2 and 3, Appendix A)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.reference_ris import reference_ris
from trainables.invariance import RIS_SIGN_RULES, representation_invariance_score


def _ids(sizes_per_target: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Targets and trajectory ids from the trajectory lengths of each target.

    Trajectory ids restart at 0 in every target, so the same id names different
    trajectories of different targets.
    """
    targets, trajectories = [], []
    for y, lengths in enumerate(sizes_per_target):
        for t, length in enumerate(lengths):
            targets += [y] * length
            trajectories += [t] * length
    return np.array(targets), np.array(trajectories)


def _perfect_features(targets: np.ndarray, units_per_target: int, rng) -> np.ndarray:
    """Each target owns ``units_per_target`` units that are high exactly on its samples."""
    num_targets = targets.max() + 1
    owner = np.repeat(np.arange(num_targets), units_per_target)
    signal = (targets[:, None] == owner[None, :]).astype(np.float64)
    return signal + 0.1 * rng.random(signal.shape)  # small noise never crosses the gap


def _random_case(seed: int, n: int = 150):
    """Unbalanced targets, several trajectories of different lengths, many ties.

    The default 150 units span several of the implementation's chunks of units.
    """
    rng = np.random.default_rng(seed)
    sizes = [list(rng.integers(1, 9, size=rng.integers(1, 5))) for _ in range(6)]
    targets, trajectories = _ids(sizes)
    order = rng.permutation(targets.size)  # samples of a target need not be adjacent
    targets, trajectories = targets[order], trajectories[order]
    latent = rng.standard_normal((targets.max() + 1, n))
    features = latent[targets] + rng.standard_normal((targets.size, n))
    features = np.maximum(features, 0.0)  # ReLU: many tied zeros
    features[:, : n // 8] = np.round(features[:, : n // 8])  # coarse: ties at every level
    if n > 1:
        features[:, -1] = 3.0  # a constant unit
    return features, targets, trajectories


@pytest.mark.parametrize("sign", RIS_SIGN_RULES)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_reference_loop_with_ties_and_imbalance(seed, sign):
    features, targets, trajectories = _random_case(seed)
    top_k = (1, 10, 25)
    expected = reference_ris(features, targets, trajectories, top_k, sign=sign)
    for dtype in (np.float64, np.float32):
        x = features.astype(dtype)
        got = representation_invariance_score(x, targets, trajectories, top_k, sign=sign)
        assert list(got) == list(top_k)
        want = reference_ris(x, targets, trajectories, top_k, sign=sign)
        for k in top_k:
            assert got[k] == pytest.approx(want[k], rel=1e-6)
    assert expected[1] >= expected[10] >= expected[25]


@pytest.mark.parametrize("sign", RIS_SIGN_RULES)
@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 129])
def test_matches_reference_loop_for_any_number_of_units(n, sign):
    features, targets, trajectories = _random_case(10 + n, n)
    got = representation_invariance_score(features, targets, trajectories, (1, n), sign=sign)
    want = reference_ris(features, targets, trajectories, (1, n), sign=sign)
    assert got == pytest.approx(want, rel=1e-6)


def test_the_paper_s_sign_rule_is_the_default_and_never_above_the_per_target_rule():
    for seed in range(4):
        features, targets, trajectories = _random_case(seed)
        per_unit = representation_invariance_score(features, targets, trajectories)
        assert per_unit == representation_invariance_score(features, targets, trajectories, sign="per_unit")
        per_target = representation_invariance_score(features, targets, trajectories, sign="per_target")
        assert all(per_unit[k] <= per_target[k] + 1e-9 for k in per_unit)
    with pytest.raises(ValueError, match="sign='per_sample' is not one of per_unit, per_target"):
        representation_invariance_score(features, targets, trajectories, sign="per_sample")


def test_accepts_torch_tensors_and_string_ids():
    features, targets, trajectories = _random_case(7)
    features = features.astype(np.float32)
    expected = representation_invariance_score(features, targets, trajectories)
    names = np.array([f"object-{y}" for y in targets])
    sweeps = np.array([f"sweep-{t}" for t in trajectories])
    assert representation_invariance_score(features, names, sweeps) == pytest.approx(expected)
    got = representation_invariance_score(
        torch.from_numpy(features), torch.from_numpy(targets), torch.from_numpy(trajectories)
    )
    assert got == pytest.approx(expected)


def test_trajectory_ids_are_per_target():
    features, targets, trajectories = _random_case(4)
    global_ids = targets * 100 + trajectories
    assert representation_invariance_score(
        features, targets, trajectories
    ) == pytest.approx(representation_invariance_score(features, targets, global_ids))


def test_local_rate_is_a_mean_over_trajectories():
    # One unit; target 0 has a 1-sample and a 3-sample trajectory. Averaging Eq. 2 over
    # trajectories gives I_0 = 1; averaging over samples would give I_0 = 3/2 (RIS 75 %).
    features = np.array([[5.0], [0.0], [0.0], [0.0], [4.0], [1.0], [2.0], [3.0]])
    targets = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    trajectories = np.array([0, 1, 1, 1, 0, 0, 0, 0])
    # Target 0, s = +1: the 4th largest is 2, so {5, 4, 3, 2} fire: G = 1/2, L = 1/2, I = 1;
    # s = -1: the 4 smallest {0, 0, 0, 1} fire: L = (0 + 1) / 2, I = 1.
    # Target 1, s = +1: {5, 4, 3, 2} fire: L = 3/4, G = 1/2, I = 3/2 (s = -1 gives 1/2).
    # RIS@1 = mean(1, 3/2) / mean(2, 2) = 62.5 %.
    got = representation_invariance_score(features, targets, trajectories, top_k=1)
    assert got == {1: pytest.approx(62.5)}
    assert reference_ris(features, targets, trajectories, 1)[1] == pytest.approx(62.5)


@pytest.mark.parametrize("sign", RIS_SIGN_RULES)
def test_equal_length_trajectories_score_the_same_however_a_target_is_split(sign):
    # Why ALOI's per-camera trajectories alone leave the illumination-direction score as
    # pooled ones do (datasets.aloi.read_aloi): with trajectories of equal length, the mean
    # over trajectories of Eq. 2 is the firing rate over all the target's samples, and the
    # thresholds and G_y (Appendix A) are per target. Units here prefer one camera.
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(6), 24)  # 6 objects x 3 cameras x 8 lamps
    camera = np.tile(np.repeat(np.arange(3), 8), 6)
    features = rng.standard_normal((targets.size, 12)) + 2.0 * (camera[:, None] == np.arange(12) % 3)
    pooled = representation_invariance_score(features, targets, np.zeros_like(targets), (1, 5), sign)
    per_camera = representation_invariance_score(features, targets, camera, (1, 5), sign)
    assert per_camera == pytest.approx(pooled, rel=1e-12)
    # Unequal lengths weight the trajectories differently, and the split then matters.
    keep = np.arange(targets.size) != 0
    uneven = representation_invariance_score(features[keep], targets[keep], camera[keep], (1, 5), sign)
    assert uneven != pytest.approx(representation_invariance_score(
        features[keep], targets[keep], np.zeros(keep.sum()), (1, 5), sign), rel=1e-9)


def test_perfectly_invariant_and_discriminative_scores_100():
    rng = np.random.default_rng(0)
    targets, trajectories = _ids([[10, 10], [5, 15, 7], [30], [3, 3, 3, 3]])
    features = _perfect_features(targets, units_per_target=25, rng=rng)
    # With a sign per (target, unit). With one sign per unit a unit high on one target
    # can be read as "low on the others" when that is better on average over targets,
    # so the same features score below 100 (see the hand-made case below).
    scores = representation_invariance_score(features, targets, trajectories, (1, 10, 25), sign="per_target")
    assert scores == {k: pytest.approx(100.0) for k in (1, 10, 25)}


def test_score_falls_as_noise_grows():
    targets, trajectories = _ids([[8, 8, 8]] * 5)
    noise_levels = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]
    mean_scores = {10: [], 25: []}
    for sigma in noise_levels:
        per_seed = {10: [], 25: []}
        for seed in range(3):
            rng = np.random.default_rng(seed)
            features = _perfect_features(targets, 25, rng)
            features += sigma * rng.standard_normal(features.shape)
            scores = representation_invariance_score(features, targets, trajectories)
            for k in per_seed:
                per_seed[k].append(scores[k])
        for k in per_seed:
            mean_scores[k].append(np.mean(per_seed[k]))
    for k, curve in mean_scores.items():
        assert curve[0] == pytest.approx(100.0)
        assert np.all(np.diff(curve) < 0), (k, curve)
        assert curve[-1] < 50.0  # heavy noise: little left of the target structure


def test_invariant_to_unit_permutation_scaling_and_sign():
    features, targets, trajectories = _random_case(5)
    expected = representation_invariance_score(features, targets, trajectories)
    rng = np.random.default_rng(0)
    permuted = features[:, rng.permutation(features.shape[1])]
    scaled = features * rng.uniform(0.5, 8.0, size=features.shape[1])
    flipped = features.copy()
    flipped[:, ::3] *= -1.0
    for transformed in (permuted, scaled, flipped):
        got = representation_invariance_score(transformed, targets, trajectories)
        assert got == pytest.approx(expected, rel=1e-6)


def test_invariant_to_consistent_sample_permutation():
    features, targets, trajectories = _random_case(6)
    expected = representation_invariance_score(features, targets, trajectories)
    order = np.random.default_rng(1).permutation(targets.size)
    got = representation_invariance_score(features[order], targets[order], trajectories[order])
    assert got == pytest.approx(expected, rel=1e-6)


def test_shuffled_targets_lower_the_score():
    # Guards the invariance tests above against a function that ignores its input.
    features, targets, trajectories = _random_case(5)
    expected = representation_invariance_score(features, targets, trajectories)
    shuffled = representation_invariance_score(
        features, np.random.default_rng(0).permutation(targets), trajectories
    )
    assert shuffled[10] < expected[10]


def test_ties_at_the_threshold_all_fire():
    # A constant unit fires on every sample for every target: L = 1, G = 1, I = 1.
    targets, trajectories = _ids([[5, 5], [10], [20]])
    constant = np.full((targets.size, 1), 2.5)
    expected = 100.0 * 1.0 / np.mean(targets.size / np.bincount(targets))
    assert representation_invariance_score(constant, targets, trajectories, 1) == {
        1: pytest.approx(expected)
    }

    # A binary unit: 1 on target 0 (10 samples) and on 5 of target 1's 10, else 0; N = 40.
    targets = np.repeat([0, 1, 2], [10, 10, 20])
    unit = np.zeros(40)
    unit[:15] = 1.0
    # y=0: the 10th largest is 1 and all 15 ones fire: I = 1 / (15/40) = 8/3.
    # y=1: s=+1 gives L = 5/10, G = 15/40, I = 4/3 (s=-1: 0.5 / (25/40) = 0.8).
    # y=2: s=-1, the 20th smallest is 0 and all 25 zeros fire: L = 1, I = 40/25 = 1.6.
    # With a sign per (target, unit): RIS@1 = mean(8/3, 4/3, 1.6) / mean(4, 4, 2) = 56 %.
    got = representation_invariance_score(unit[:, None], targets, np.zeros(40), 1, sign="per_target")
    assert got == {1: pytest.approx(56.0)}
    # With one sign per unit (Sec. 4.1): s = +1 gives I = (8/3, 4/3, 1) (y=2: the 20th
    # largest is 0, all 40 fire, I = 1), mean 5/3; s = -1 gives (0, 0.8, 1.6), mean 0.8.
    # So s = +1 for every target: RIS@1 = (5/3) / (10/3) = 50 %.
    got = representation_invariance_score(unit[:, None], targets, np.zeros(40), 1, sign="per_unit")
    assert got == {1: pytest.approx(50.0)}
    assert reference_ris(unit[:, None], targets, np.zeros(40), 1, sign="per_unit") == {1: pytest.approx(50.0)}


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda f, y, t, k: (f[:, 0], y, t, k), ValueError, "2-D"),
        (lambda f, y, t, k: (f, y[:-1], t, k), ValueError, "targets"),
        (lambda f, y, t, k: (f, y, t[:, None], k), ValueError, "trajectories"),
        (lambda f, y, t, k: (np.where(f > 1.5, np.nan, f), y, t, k), ValueError, "non-finite"),
        (lambda f, y, t, k: (np.where(f > 1.5, np.inf, f), y, t, k), ValueError, "non-finite"),
        (lambda f, y, t, k: (f, np.zeros_like(y), t, k), ValueError, "at least 2"),
        (lambda f, y, t, k: (f, y, t, (10, f.shape[1] + 1)), ValueError, "outside"),
        (lambda f, y, t, k: (f, y, t, 0), ValueError, "outside"),
        (lambda f, y, t, k: (f, y, t, ()), ValueError, "at least one"),
        (lambda f, y, t, k: (f, y, t, (2.5,)), TypeError, "integers"),
        (lambda f, y, t, k: (f.astype(complex), y, t, k), TypeError, "real-valued"),
        (lambda f, y, t, k: (f[:1], y[:1], t[:1], k), ValueError, "at least 2 samples"),
    ],
)
def test_rejects_bad_input(change, error, match):
    features, targets, trajectories = _random_case(0)
    args = change(features, targets, trajectories, (10, 25))
    with pytest.raises(error, match=match):
        representation_invariance_score(*args)
