"""VOC07 average precision and the SVM protocol (no Ray)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from trainables.probes import voc07_average_precision
from trainables.probes.svm import svm_map


def reference_ap(scores, labels, eleven_point):
    """An independent loop: one operating point per distinct threshold (score >= t)."""
    pairs = [(s, y) for s, y in zip(scores, labels) if y != 0]
    n_pos = sum(y == 1 for _, y in pairs)
    points = []
    for t in sorted({s for s, _ in pairs}, reverse=True):
        tp = sum(1 for s, y in pairs if s >= t and y == 1)
        fp = sum(1 for s, y in pairs if s >= t and y == -1)
        points.append((tp / n_pos, tp / (tp + fp)))
    if eleven_point:
        total = 0.0
        for k in range(11):
            at = [p for r, p in points if r >= k / 10 - 1e-12]
            total += max(at) if at else 0.0
        return 100 * total / 11
    # Area under the interpolated curve: p_interp(r) = max precision at recall >= r.
    area, previous = 0.0, 0.0
    for r, _ in points:
        area += (r - previous) * max(p for r2, p in points if r2 >= r)
        previous = r
    return 100 * area


CASES = {
    "perfect": ([0.9, 0.8, 0.1, 0.05], [1, 1, -1, -1]),
    "worst": ([0.1, 0.2, 0.8, 0.9], [1, 1, -1, -1]),
    "interleaved": ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, -1, 1, -1, -1, 1]),
    "ties": ([0.5, 0.5, 0.5, 0.2, 0.2], [1, -1, -1, 1, -1]),
    "difficult": ([0.9, 0.95, 0.8, 0.3, 0.99], [1, 0, -1, 1, 0]),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("eleven_point", [True, False])
def test_ap_matches_an_independent_loop(name, eleven_point):
    scores, labels = CASES[name]
    assert voc07_average_precision(scores, labels, eleven_point) == pytest.approx(
        reference_ap(scores, labels, eleven_point), abs=1e-9)


def test_ap_hand_computed_values():
    # interleaved: P/R points (1/3, 1), (2/3, 2/3), (1, 1/2). 11-point: t <= 0.3 -> 1,
    # 0.4..0.6 -> 2/3, 0.7..1.0 -> 1/2; area: 1/3 * 1 + 1/3 * 2/3 + 1/3 * 1/2.
    scores, labels = CASES["interleaved"]
    assert voc07_average_precision(scores, labels) == pytest.approx(100 * (4 * 1 + 3 * 2 / 3 + 4 * 0.5) / 11)
    assert voc07_average_precision(scores, labels, eleven_point=False) == pytest.approx(100 * (1 + 2 / 3 + 1 / 2) / 3)
    assert voc07_average_precision(*CASES["perfect"]) == 100.0
    # Ties form one threshold: order of tied examples does not matter.
    scores, labels = CASES["ties"]
    assert voc07_average_precision(scores, labels) == voc07_average_precision(scores[::-1], labels[::-1])
    # Difficult (0) examples are ignored whatever their score: same as dropping them.
    scores, labels = CASES["difficult"]
    kept = [(s, y) for s, y in zip(scores, labels) if y]
    # Kept: (0.9, +), (0.8, -), (0.3, +): points (1/2, 1), (1, 2/3); 11-point (6 * 1 + 5 * 2/3) / 11.
    assert voc07_average_precision(scores, labels) == voc07_average_precision(*zip(*kept))
    assert voc07_average_precision(scores, labels) == pytest.approx(100 * (6 + 5 * 2 / 3) / 11)


def test_area_ap_matches_sklearn_where_definitions_agree():
    # sklearn's AP is the uninterpolated sum of recall steps x precision; it equals the
    # interpolated area AP when precision never rises with recall, and is below it otherwise.
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = np.where(rng.random(40) < 0.3, 1, -1)
        labels[0] = 1
        scores = rng.normal(size=40) + labels
        ours = voc07_average_precision(scores, labels, eleven_point=False)
        theirs = 100 * average_precision_score(labels == 1, scores)
        assert ours >= theirs - 1e-9
    monotone_scores, monotone_labels = [0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, -1, 1, -1]
    # precisions at the positives: 1, 1, 3/4: non-increasing
    assert voc07_average_precision(monotone_scores, monotone_labels, eleven_point=False) == pytest.approx(
        100 * average_precision_score(np.array(monotone_labels) == 1, monotone_scores))


def test_ap_without_positives_is_nan_and_bad_input_is_refused():
    assert math.isnan(voc07_average_precision([0.3, 0.2], [-1, 0]))
    with pytest.raises(ValueError, match="differ in length"):
        voc07_average_precision([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="1, -1 or 0"):
        voc07_average_precision([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        voc07_average_precision([0.1, float("nan")], [1, -1])


def multilabel(seed, n=240, classes=5):
    """Images with several labels each, in VOC's {1, -1} encoding, about 30 % positive."""
    rng = np.random.default_rng(seed)
    present = rng.random((n, classes)) < 0.3
    return np.where(present, 1, -1).astype(np.int8), present


def test_svm_map_near_100_on_label_features_and_near_frequency_on_random():
    train_labels, train_present = multilabel(1)
    test_labels, test_present = multilabel(2)
    rng = np.random.default_rng(3)

    def encode(present):  # features that encode the labels, plus noise dimensions
        return np.hstack([present * 2.0 + rng.normal(0, 0.1, present.shape), rng.normal(0, 1, (len(present), 11))])

    mean_ap, aps = svm_map(encode(train_present), train_labels, encode(test_present), test_labels)
    assert mean_ap > 99.0 and not np.isnan(aps).any()

    random_map, _ = svm_map(rng.normal(size=(240, 16)), train_labels, rng.normal(size=(240, 16)), test_labels)
    frequency = 100 * test_present.mean()
    # A random ranking's AP is about the positive rate (11-point AP slightly above it).
    assert abs(random_map - frequency) < 12.0, (random_map, frequency)


def test_svm_map_skips_unscorable_classes_and_ignores_difficult():
    train_labels, present = multilabel(1, n=120, classes=3)
    test_labels, test_present = multilabel(2, n=120, classes=3)
    x_train, x_test = present * 1.0, test_present * 1.0
    train_labels[:, 2] = -1  # no training positive: class 2 is not scored
    test_labels[test_present[:, 0], 0] = 0  # every positive of class 0 difficult: not scored
    mean_ap, aps = svm_map(x_train, train_labels, x_test, test_labels, costs=(1.0,))
    assert np.isnan(aps[0]) and np.isnan(aps[2]) and aps[1] > 99.0
    assert mean_ap == aps[1]
    with pytest.raises(ValueError, match="N x C"):
        svm_map(x_train, train_labels[:, :2], x_test, test_labels)


def test_svm_scores_do_not_depend_on_threads_and_bad_settings_are_refused():
    from trainables.probes.svm import svm_problems, svm_scores

    train_labels, present = multilabel(4, n=150, classes=4)
    rng = np.random.default_rng(5)
    x = np.hstack([present + rng.normal(0, 0.5, present.shape), rng.normal(0, 1, (150, 6))])
    one = svm_scores(x[:100], train_labels[:100], x[100:], n_jobs=1)
    both = svm_scores(x[:100], train_labels[:100], x[100:], n_jobs=2)
    np.testing.assert_array_equal(one, both)
    assert svm_problems("0.1,1", 3, 100, n_jobs=-1) == []
    assert any("n_jobs=0" in p for p in svm_problems("0.1,1", 3, 100, n_jobs=0))
