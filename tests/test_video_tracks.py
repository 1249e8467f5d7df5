"""The track recursion (paper Appendix B, Eq. 4 and 5) against a plain per-region loop."""
from __future__ import annotations

import math

import numpy as np
import pytest

from datasets.video.tracks import (
    TrackPairs,
    chunk_track_pairs,
    greedy_tracks,
    ground_truth_pairs,
    precision_recall,
    select_track_pairs,
    track_precision_recall,
    track_scores,
)


def cosine(a, b) -> float:
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    if na == 0 or nb == 0:
        return 0.0
    return sum(x * y for x, y in zip(a, b)) / (na * nb)


def clipped_cosine(a, b) -> float:
    return max(0.0, cosine(a, b))


def loop_score(features, i, j, r, s) -> float:
    """Eq. 5 and Eq. 4 written out literally, one region at a time."""
    if j == i + 1:
        return clipped_cosine(features[i][r], features[j][s])  # Eq. 5
    return sum((j - i - 1) / (j - i) * loop_score(features, i, j - 1, r, k)
               * clipped_cosine(features[j - 1][k], features[j][s]) for k in range(len(features[j - 1])))  # Eq. 4


@pytest.mark.parametrize("seed,frames,regions,dims,span", [(0, 4, 3, 5, 1), (1, 5, 4, 3, 2), (2, 7, 3, 4, 3),
                                                            (3, 6, 5, 2, 5)])
def test_track_scores_equal_the_per_region_loop(seed, frames, regions, dims, span):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(frames, regions, dims))  # signed: some cosines are clipped at 0
    starts = np.arange(0, frames - span, span)
    raw = track_scores(features, span, normalize=False)
    assert raw.shape == (len(starts), regions, regions)
    for p, i in enumerate(starts):
        for r in range(regions):
            for s in range(regions):
                assert raw[p, r, s] == pytest.approx(loop_score(features.tolist(), i, i + span, r, s), rel=1e-9, abs=1e-12)
    # The per-step score is Eq. 4 rescaled per frame pair: (n S / R^(n-1))^(1/n), within [0, 1].
    mean = track_scores(features, span)
    np.testing.assert_allclose(mean, (raw * span / regions ** (span - 1)) ** (1 / span), rtol=1e-9, atol=1e-12)
    assert mean.min() >= 0 and mean.max() <= 1 + 1e-12


def test_padded_regions_do_not_change_real_scores():
    rng = np.random.default_rng(4)
    real = [rng.random((n, 3)) for n in (3, 2, 4, 3)]
    padded = np.zeros((4, 4, 3))
    for t, f in enumerate(real):
        padded[t, : len(f)] = f
    counts = [len(f) for f in real]
    raw = track_scores(padded, 3, starts=[0], counts=counts, normalize=False)
    for r in range(3):
        for s in range(3):
            assert raw[0, r, s] == pytest.approx(loop_score([f.tolist() for f in real], 0, 3, r, s))
    mean = track_scores(padded, 3, starts=[0], counts=counts)
    np.testing.assert_allclose(mean, (raw * 3 / (2 * 4)) ** (1 / 3))


def test_pairs_are_each_regions_best_end_above_the_threshold_only():
    rng = np.random.default_rng(5)
    features = rng.random((9, 6, 4)).astype(np.float32)
    scores = track_scores(features, 4)
    starts = np.arange(0, 9 - 4, 4)
    for threshold in (0.0, float(np.median(scores.max(axis=2))), 2.0):
        pairs = select_track_pairs(scores, starts, 4, threshold)
        assert np.all(pairs.score > threshold)
        assert np.all(pairs.offset_b - pairs.offset_a == 4)
        kept = set(zip(pairs.offset_a.tolist(), pairs.region_a.tolist()))
        for p, i in enumerate(starts):
            for r in range(6):
                best = scores[p, r].max()
                assert ((int(i), r) in kept) == (best > threshold)
        for a, r, s, sc in zip(pairs.offset_a, pairs.region_a, pairs.region_b, pairs.score):
            p = list(starts).index(a)
            assert s == scores[p, r].argmax() and sc == scores[p, r, s]
    assert len(select_track_pairs(scores, starts, 4, 2.0)) == 0


def test_chunk_pairs_centre_each_frame_then_follow_eq4():
    rng = np.random.default_rng(7)
    features = [rng.random((n, 3)).astype(np.float64) for n in (3, 4, 3, 2)]
    pairs = chunk_track_pairs(features, 3, -1.0)
    centred = [f - f.mean(axis=0) for f in features]
    for r, s, score in zip(pairs.region_a, pairs.region_b, pairs.score):
        loop = [loop_score([f.tolist() for f in centred], 0, 3, r, end) for end in range(2)]
        assert s == int(np.argmax(loop))
        assert score == pytest.approx((loop[s] * 3 / (4 * 3)) ** (1 / 3), rel=1e-5)


def test_chunk_pairs_skip_padding_and_short_chunks():
    rng = np.random.default_rng(6)
    features = [rng.random((n, 3)).astype(np.float32) for n in (4, 2, 3, 1, 4)]
    pairs = chunk_track_pairs(features, 2, 0.0)
    counts = [len(f) for f in features]
    assert np.all(pairs.region_a < np.array(counts)[pairs.offset_a])
    assert np.all(pairs.region_b < np.array(counts)[pairs.offset_b])
    assert len(chunk_track_pairs(features[:2], 2, 0.0)) == 0


def test_ground_truth_pairs_need_both_boxes():
    boxes = [[0, 0, 5, 5], None, [1, 1, 4, 4], [0, 0, 0, 3], [2, 2, 3, 3], [1, 1, 2, 2]]
    assert ground_truth_pairs(boxes, 2) == [(0, 2), (2, 4)]
    assert ground_truth_pairs(boxes, 1) == [(4, 5)]


def test_precision_recall_against_boxes():
    # Two frames; regions 0 sit on the object, region 1 does not.
    proposals = [np.array([[0, 0, 10, 10], [50, 50, 10, 10]]), np.array([[1, 1, 10, 10], [60, 60, 5, 5]])]
    boxes = [np.array([0, 0, 10, 10]), np.array([1, 0, 10, 10])]
    pairs = TrackPairs(np.array([0, 0]), np.array([1, 1]), np.array([0, 1]), np.array([0, 0]), np.array([0.9, 0.5]))
    counts = track_precision_recall(pairs, proposals, boxes, 1)
    assert counts == {"kept": 2.0, "correct": 1.0, "chance_pairs": 0.5, "trackable": 1.0, "recalled": 1.0}
    metrics = precision_recall(counts)
    assert metrics == {"tracks/precision": 0.5, "tracks/chance_precision": 0.25, "tracks/recall": 1.0}
    assert math.isnan(precision_recall({"kept": 0, "correct": 0, "chance_pairs": 0, "trackable": 0,
                                        "recalled": 0})["tracks/precision"])


def greedy_loop(features, i, span, r) -> tuple[int, float]:
    """Sec. 5's recursion written out: nearest region of each next frame, product of Eq. 5 scores."""
    at, product = r, 1.0
    for t in range(i, i + span):
        # Minimum cosine distance: the largest cosine, before the clip (which ties every negative one).
        cosines = [cosine(features[t][at], other) for other in features[t + 1]]
        at = max(range(len(cosines)), key=lambda s: (cosines[s], -s))  # first of the best (argmax's tie rule)
        product *= max(0.0, cosines[at])  # Eq. 5
    return at, product


@pytest.mark.parametrize("seed,frames,regions,dims,span", [(0, 4, 3, 5, 1), (1, 5, 4, 3, 2), (2, 7, 3, 4, 3),
                                                            (3, 6, 5, 2, 5)])
def test_greedy_tracks_equal_the_per_region_loop(seed, frames, regions, dims, span):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(frames, regions, dims))  # signed: some matches clip at 0
    starts = np.arange(0, frames - span, span)
    ends, raw = greedy_tracks(features, span, normalize=False)
    _, per_step = greedy_tracks(features, span)
    assert ends.shape == raw.shape == (len(starts), regions)
    for p, i in enumerate(starts):
        for r in range(regions):
            end, product = greedy_loop(features.tolist(), int(i), span, r)
            assert ends[p, r] == end
            assert raw[p, r] == pytest.approx(product, rel=1e-9, abs=1e-12)
            assert per_step[p, r] == pytest.approx(product ** (1 / span), rel=1e-9, abs=1e-12)
    # One step is Eq. 5 itself: the greedy end is the row's argmax of the chain's scores
    # (where the best is positive: the clip ties every negative cosine at 0).
    chain = track_scores(features, 1)
    ends1, scores1 = greedy_tracks(features, 1)
    np.testing.assert_allclose(scores1, chain.max(axis=2))
    positive = chain.max(axis=2) > 0
    assert positive.any()
    np.testing.assert_array_equal(ends1[positive], chain.argmax(axis=2)[positive])


def test_greedy_chunk_pairs_use_raw_features_skip_padding_and_threshold():
    rng = np.random.default_rng(8)
    features = [rng.random((n, 3)) for n in (4, 2, 3, 1, 4)]
    counts = [len(f) for f in features]
    for threshold in (0.0, 0.9):
        pairs = chunk_track_pairs(features, 2, threshold, matching="greedy")
        kept = {(a, r): (s, sc) for a, r, s, sc in zip(pairs.offset_a.tolist(), pairs.region_a.tolist(),
                                                        pairs.region_b.tolist(), pairs.score.tolist())}
        for i in (0, 2):
            for r in range(counts[i]):
                end, product = greedy_loop([f.tolist() for f in features], i, 2, r)  # raw, not centred
                if product ** 0.5 > threshold:
                    assert kept.pop((i, r)) == (end, pytest.approx(product ** 0.5, rel=1e-5))
                    assert end < counts[i + 2]
        assert kept == {}  # nothing kept at or below the threshold, no padded start
    with pytest.raises(ValueError, match="matching='nearest'"):
        chunk_track_pairs(features, 2, 0.0, matching="nearest")
