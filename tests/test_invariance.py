"""Top-K Representation Invariance Score (Sec. 4.1, Eq. 2 and 3, Appendix A)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.reference_ris import reference_ris
from trainables.invariance import (
    RIS_LOCAL_RATES,
    RIS_SIGN_RULES,
    RIS_WEIGHTINGS,
    representation_invariance_score,
    target_conditioned_invariance,
)

READINGS = [(rate, weighting) for rate in RIS_LOCAL_RATES for weighting in RIS_WEIGHTINGS]


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


@pytest.mark.parametrize("reading", READINGS)
@pytest.mark.parametrize("sign", RIS_SIGN_RULES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_loop_with_ties_and_imbalance(seed, sign, reading):
    rate, weighting = reading
    options = dict(sign=sign, local_rate=rate, weighting=weighting)
    features, targets, trajectories = _random_case(seed)
    top_k = (1, 10, 25)
    for dtype in (np.float64, np.float32):
        x = features.astype(dtype)
        got = representation_invariance_score(x, targets, trajectories, top_k, **options)
        assert list(got) == list(top_k)
        want = reference_ris(x, targets, trajectories, top_k, **options)
        for k in top_k:
            assert got[k] == pytest.approx(want[k], rel=1e-6)
        assert want[1] >= want[10] >= want[25]


@pytest.mark.parametrize("reading", READINGS)
@pytest.mark.parametrize("sign", RIS_SIGN_RULES)
@pytest.mark.parametrize("n", [1, 2, 65, 129])
def test_matches_reference_loop_for_any_number_of_units(n, sign, reading):
    options = dict(sign=sign, local_rate=reading[0], weighting=reading[1])
    features, targets, trajectories = _random_case(10 + n, n)
    got = representation_invariance_score(features, targets, trajectories, (1, n), **options)
    want = reference_ris(features, targets, trajectories, (1, n), **options)
    assert got == pytest.approx(want, rel=1e-6)


def test_per_target_is_the_default_and_never_below_one_sign_per_unit():
    for seed in range(4):
        features, targets, trajectories = _random_case(seed)
        default = representation_invariance_score(features, targets, trajectories)
        assert default == representation_invariance_score(
            features, targets, trajectories, sign="per_target", local_rate="eq2", weighting="sample")
        per_unit = representation_invariance_score(features, targets, trajectories, sign="per_unit_max")
        assert all(per_unit[k] <= default[k] + 1e-9 for k in default)
    with pytest.raises(ValueError, match="sign='per_sample' is not one of per_target, per_unit_max"):
        representation_invariance_score(features, targets, trajectories, sign="per_sample")
    # The old per-unit criterion is refused with its reason, not silently mapped.
    with pytest.raises(ValueError, match="sign='per_unit' was removed: .* rounding chose the sign"):
        representation_invariance_score(features, targets, trajectories, sign="per_unit")


def _balanced_relu_case(seed: int = 0, num_targets: int = 16, per_target: int = 12, units: int = 96):
    """The issue's case, smaller: equally large targets, ReLU features (many tied zeros)."""
    rng = np.random.default_rng(seed)
    targets = np.repeat(np.arange(num_targets), per_target)
    trajectories = np.tile(np.repeat(np.arange(3), per_target // 3), num_targets)
    latent = rng.standard_normal((num_targets, units))
    features = np.maximum(latent[targets] + rng.standard_normal((targets.size, units)), 0.0)
    return features.astype(np.float32), targets, trajectories


def test_the_mean_over_targets_carries_no_information_on_balanced_sets():
    # Why the old per-unit criterion was retired: with equally large targets every target
    # has the same threshold, so the unit fires on the same samples for every y; summing
    # Eq. 2 over targets counts each firing sample once: sum_y |X_y| L_y(i) = G(i) N, hence
    # mean_y I_y(i) = 1 for every unit and both signs, ties at the threshold included. A
    # criterion that is 1 everywhere cannot choose a sign; rounding did.
    features, targets, trajectories = _balanced_relu_case()
    high, low = target_conditioned_invariance(features, targets, trajectories)
    assert np.abs(high.mean(axis=0) - 1.0).max() < 1e-12
    assert np.abs(low.mean(axis=0) - 1.0).max() < 1e-12
    # ... while the terms themselves differ by sign, so the sign rule does matter.
    assert np.abs(high - low).max() > 0.5
    # On unbalanced targets the mean is not 1 (the identity needs equal sizes).
    uneven = np.arange(targets.size) >= 5
    high, _ = target_conditioned_invariance(features[uneven], targets[uneven], trajectories[uneven])
    assert np.abs(high.mean(axis=0) - 1.0).max() > 1e-3


def _equivalent_inputs(features, targets, trajectories, rng):
    """Inputs with the same L_y, G_y and I_y as the given ones (Eq. 2-3 unchanged)."""
    order = rng.permutation(targets.size)
    affine = features.astype(np.float64) * rng.uniform(0.5, 4.0, size=features.shape[1]) + rng.uniform(
        -3.0, 3.0, size=features.shape[1])
    return {
        "duplicated": (np.repeat(features, 2, axis=0), np.repeat(targets, 2), np.repeat(trajectories, 2)),
        "reordered": (features[order], targets[order], trajectories[order]),
        "affine": (affine, targets, trajectories),
        "float64": (features.astype(np.float64), targets, trajectories),
    }


@pytest.mark.parametrize("reading", READINGS)
@pytest.mark.parametrize("sign", RIS_SIGN_RULES)
def test_every_rule_is_unchanged_by_changes_that_leave_its_equation_unchanged(sign, reading):
    # Duplicating every sample, reordering samples, a positive affine map of each unit and
    # float32 features read as float64 leave every L_y, G_y and I_y of Eq. 2-3 as they are;
    # the score must not move. The issue measured the old per-unit rule moving 11.3 -> 37.8
    # under duplication on such a set.
    options = dict(sign=sign, local_rate=reading[0], weighting=reading[1])
    rng = np.random.default_rng(3)
    for features, targets, trajectories in (_balanced_relu_case(), _random_case(2)):
        features = features.astype(np.float32)
        expected = representation_invariance_score(features, targets, trajectories, (1, 10, 25), **options)
        for name, args in _equivalent_inputs(features, targets, trajectories, rng).items():
            got = representation_invariance_score(*args, (1, 10, 25), **options)
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-9), name


def test_the_reference_reading_sees_trajectories_where_eq2_does_not():
    # Target 0 holds 4 samples in two trajectories of 2; target 1 holds 12. Unit 0 is high
    # on one whole trajectory of target 0, unit 1 on one sample of each.
    targets = np.array([0] * 4 + [1] * 12)
    trajectories = np.array([0, 0, 1, 1] + [0] * 12)
    whole = np.array([1, 1, 0, 0] + [0.5] * 12) + np.linspace(0, 0.01, 16)
    scattered = np.array([1, 0, 1, 0] + [0.5] * 12) + np.linspace(0, 0.01, 16)
    features = np.stack([whole, scattered], axis=1)
    # m_0 = 4: the 4 largest of each unit are its two ones and the two largest 0.5s
    # (target 1's samples), so on target 0 both units fire on 2 of 4 samples: Eq. 2 gives
    # both L_0 = 1/2. Referenced: unit 0's firing samples fill trajectory 0 (L_0 = 1),
    # unit 1's fill half of each trajectory (L_0 = 1/2).
    eq2, _ = target_conditioned_invariance(features, targets, trajectories, "eq2")
    referenced, _ = target_conditioned_invariance(features, targets, trajectories, "reference")
    g = 4 / 16
    assert eq2[0] == pytest.approx([0.5 / g, 0.5 / g])
    assert referenced[0] == pytest.approx([1.0 / g, 0.5 / g])


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


def test_local_rate_weights_samples_as_eq2_or_trajectories_when_asked():
    # One unit; target 0 has a 1-sample and a 3-sample trajectory.
    features = np.array([[5.0], [0.0], [0.0], [0.0], [4.0], [1.0], [2.0], [3.0]])
    targets = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    trajectories = np.array([0, 1, 1, 1, 0, 0, 0, 0])
    # m = 4 for both targets. s = +1: {5, 4, 3, 2} fire, G = 1/2; s = -1: {0, 0, 0, 1}.
    # Target 0, Eq. 2 (samples): s = +1, L = 1/4, I = 1/2; s = -1, L = 3/4, I = 3/2.
    # Target 0, trajectories alike: s = +1, L = (1 + 0)/2, I = 1; s = -1, L = (0 + 1)/2, I = 1.
    # Target 1 (one trajectory): s = +1, L = 3/4, I = 3/2; s = -1, L = 1/4, I = 1/2.
    # RIS@1 = mean of the best I over targets / mean(2, 2).
    assert representation_invariance_score(features, targets, trajectories, top_k=1) == {1: pytest.approx(75.0)}
    assert representation_invariance_score(features, targets, trajectories, 1, weighting="trajectory") == {
        1: pytest.approx(62.5)}
    # Referenced (Goodfellow): target 0, s = +1, the one firing reference is alone in its
    # trajectory, L = 1, I = 2; s = -1, the three zeros fill theirs, L = 1, I = 2.
    # Target 1: s = +1, three references, each in a trajectory 3/4 firing, I = 3/2.
    assert representation_invariance_score(features, targets, trajectories, 1, local_rate="reference") == {
        1: pytest.approx(87.5)}
    for weighting in RIS_WEIGHTINGS:
        for rate in RIS_LOCAL_RATES:
            assert reference_ris(features, targets, trajectories, 1, local_rate=rate, weighting=weighting) == (
                representation_invariance_score(features, targets, trajectories, 1, local_rate=rate,
                                                weighting=weighting))


@pytest.mark.parametrize("sign", RIS_SIGN_RULES)
def test_under_eq2_how_a_target_is_split_never_matters(sign):
    # Why ALOI's per-camera trajectories alone leave the illumination-direction score as
    # pooled ones do (datasets.aloi.read_aloi), and why an invariance set's *targets* must
    # vary only in its factor: Eq. 2 weighs every sample of y alike, so L_y(i) is the
    # firing rate over the target's samples, whatever the trajectories. Units here prefer
    # one camera.
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(6), 24)  # 6 objects x 3 cameras x 8 lamps
    camera = np.tile(np.repeat(np.arange(3), 8), 6)
    features = rng.standard_normal((targets.size, 12)) + 2.0 * (camera[:, None] == np.arange(12) % 3)
    keep = np.arange(targets.size) != 0  # one trajectory one sample short: unequal sizes
    for subset in (slice(None), keep):
        f, y, t = features[subset], targets[subset], camera[subset]
        pooled = representation_invariance_score(f, y, np.zeros_like(y), (1, 5), sign)
        assert representation_invariance_score(f, y, t, (1, 5), sign) == pytest.approx(pooled, rel=1e-12)
    # Weighing trajectories alike (an explicit option) makes unequal splits matter, and so
    # does the referenced reading, in which a trajectory is what a firing reference predicts.
    for options in (dict(weighting="trajectory"), dict(local_rate="reference")):
        pooled = representation_invariance_score(features[keep], targets[keep], np.zeros(keep.sum()), (1, 5),
                                                 sign, **options)
        split = representation_invariance_score(features[keep], targets[keep], camera[keep], (1, 5), sign,
                                                **options)
        assert split != pytest.approx(pooled, rel=1e-6), options


def test_perfectly_invariant_and_discriminative_scores_100():
    rng = np.random.default_rng(0)
    targets, trajectories = _ids([[10, 10], [5, 15, 7], [30], [3, 3, 3, 3]])
    features = _perfect_features(targets, units_per_target=25, rng=rng)
    for reading in READINGS:
        options = dict(local_rate=reading[0], weighting=reading[1])
        for sign in RIS_SIGN_RULES:
            scores = representation_invariance_score(features, targets, trajectories, (1, 10, 25), sign, **options)
            assert scores == {k: pytest.approx(100.0) for k in (1, 10, 25)}, (sign, reading)


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
    # With one sign per unit: s = +1 gives I = (8/3, 4/3, 1) (y=2: the 20th largest is 0,
    # all 40 fire, I = 1), as shares of their maxima I * P(y) = (2/3, 1/3, 1/2); s = -1
    # gives I = (0, 0.8, 1.6), shares (0, 0.2, 0.8). Best first: 0.8 > 2/3, so s = -1 for
    # every target (the unit fires on all of y=2 and 5 others): RIS@1 = 0.8 / (10/3) = 24 %.
    # Raw I would have picked s = +1 (8/3 > 1.6) although y=0's 8/3 is 2/3 of its maximum.
    got = representation_invariance_score(unit[:, None], targets, np.zeros(40), 1, sign="per_unit_max")
    assert got == {1: pytest.approx(24.0)}
    assert reference_ris(unit[:, None], targets, np.zeros(40), 1, sign="per_unit_max") == {1: pytest.approx(24.0)}


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
        (lambda f, y, t, k: (f, y, t, k, "per_target", "goodfellow"), ValueError, "local_rate='goodfellow'"),
        (lambda f, y, t, k: (f, y, t, k, "per_target", "eq2", "target"), ValueError, "weighting='target'"),
    ],
)
def test_rejects_bad_input(change, error, match):
    features, targets, trajectories = _random_case(0)
    args = change(features, targets, trajectories, (10, 25))
    with pytest.raises(error, match=match):
        representation_invariance_score(*args)
