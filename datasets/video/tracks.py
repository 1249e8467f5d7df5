"""Unsupervised region tracks: the recursive track score of the paper's Appendix B.

Every chunk frame z_t holds R regions z_t^r (selective-search boxes) with features
f(z_t^r) (ROI-aligned layer3 features of the baseline model; ``region_features``). A
track runs from a region of frame i to a region of frame j through one region of every
frame in between. Appendix B scores it recursively:

    S(z_t^r, z_{t+1}^k) = max(0, d_cos(f(z_t^r), f(z_{t+1}^k)))                      (Eq. 5)
    S(z_i^r, z_j^r') = sum_k (j-i-1)/(j-i) S(z_i^r, z_{j-1}^k) max(0, d_cos(f(z_{j-1}^k), f(z_j^r')))   (Eq. 4)

With C_t the R x R matrix of clipped cosines between frames t and t+1, Eq. 4 is a
matrix product: S(i, j) = (j-i-1)/(j-i) S(i, j-1) C_{j-1}, so S(i, i+n) = C_i C_{i+1} ...
C_{i+n-1} / n. :func:`track_scores` computes it for every start of a chunk at once with
batched matrix products (a loop over the n steps of a span, never over regions).

**The threshold's unit.** Eq. 4 sums over every chain of intermediate regions, so its
raw value grows like R^(n-1): a threshold on it would mean something else for every
gap and proposal count. Tracks are therefore thresholded on the *per-step* score
``(n S / (R_{i+1} ... R_{j-1}))^(1/n)``: ``n S / prod R`` is the mean, over every chain of
regions from z_i^r to z_j^r', of the product of clipped cosines along the chain, and the
n-th root makes it a per-step similarity, comparable across gaps. It is in [0, 1], equals
Eq. 5 for adjacent frames, and within one frame pair orders tracks exactly as Eq. 4
does. ``normalize=False`` gives Eq. 4's raw values.

**Centred features.** :func:`chunk_track_pairs` subtracts each frame's mean region
feature before the cosines. Layer3 features are ReLU outputs, so every raw cosine is
positive and the clip at 0 never bites; a product of positive matrices converges to rank
one (Perron-Frobenius), and after a few frames every region's best track ends in the
same "hub" region. Measured on the synthetic videos (random-init ResNet-18 features,
BENCHMARKS.md): with raw features no kept pair at any gap from 2 to 10 frames was on the
object (precision 0.0); with centred features precision is 5-40x chance and rises with
the threshold. Centring makes
the cosines signed, so the clip keeps only regions that look alike relative to the rest
of their frame.

**Two matchings** (``MATCHINGS``; :func:`chunk_track_pairs`' ``matching``):

- ``"chain"`` (the default): the centred Eq. 4 above. Each region of frame i is matched
  to the end region of its best-scoring track in frame i+k, the best over every chain
  of intermediate regions (:func:`select_track_pairs`).
- ``"greedy"``: Sec. 5's recursion ("matching each region z_i^r to a region in a
  subsequent frame z_{i+1}^s by choosing the minimum distance ... By recursively
  matching regions ...") on the *raw* features, with Appendix B's match score
  max(0, d_cos) (Eq. 5) and no centring. z_i^r is matched to its nearest region of frame
  i+1 (maximum cosine = minimum cosine distance), that one to its nearest of frame i+2,
  and so on to i+k (:func:`greedy_tracks`). The track's cumulative match score is the
  *product* of its k Eq. 5 scores: the term of Eq. 4's sum for this one chain of
  regions, less Eq. 4's constant 1/k (its factors (j-i-1)/(j-i) telescoped), so one weak link (an
  occlusion, a jump to another region) sinks the whole track. It is thresholded on the
  same per-step unit as the chain: the k-th root of the product (the geometric mean of
  the k matches; Eq. 5 itself for k = 1). Each step's argmax commits to one region, so
  there is no product of whole matrices to converge onto a hub region, and raw
  features (every cosine positive, the clip idle) need no centring. Measured
  (BENCHMARKS.md): its best ends beat the chain's (8.3x chance vs 5.9x at k = 5, recall
  0.78 vs 0.56), but its raw scores (nearly all above 0.97) do not rank tracks, so its
  threshold buys no precision, while the chain's does (10x chance at its default).

**Pairs.** Either way the pair (z_i^r, z_{i+k}^s) is kept when its per-step score is
above ``track_threshold``. Ground-truth pairs are
the annotated boxes of the two frames (:func:`ground_truth_pairs`), and
:func:`track_precision_recall` scores unsupervised pairs against them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from datasets.video.proposals import box_iou

IOU_MATCH = 0.5  # a region "is" the object when its IoU with the annotated box is at least this
MATCHINGS = ("chain", "greedy")  # module docstring


def _unit_rows(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)  # a zero row (padding) stays zero: cosine 0


def track_scores(features: np.ndarray, span: int, starts: np.ndarray | list[int] | None = None,
                 counts: np.ndarray | list[int] | None = None, normalize: bool = True,
                 blas_threads: int | None = 1) -> np.ndarray:
    """Track scores from every region of frame i to every region of frame i + ``span`` (Eq. 4, 5).

    Args:
        features: ``(T, R, D)`` region features of T consecutive frames of one chunk; a
            frame with fewer regions is padded with zero rows (their cosines are 0).
        span: n = j - i >= 1 (1: Eq. 5; more: Eq. 4's recursion).
        starts: the first frames i (default: 0, span, 2 span, ... as long as i + span < T,
            the paper's pairs i mod k = 0).
        counts: ``(T,)`` real regions per frame (default R), for the normalisation.
        normalize: the per-step score in [0, 1] (module docstring) instead of Eq. 4's raw sum.
        blas_threads: BLAS threads for the products (None: the library's default). One by
            default: the stage runs one chunk per core, and on a shared 2-core machine
            OpenBLAS's own threads made one chunk 2-20x slower (BENCHMARKS.md).

    Returns:
        ``(len(starts), R, R)``: entry ``[p, r, s]`` scores the track from region r of frame
        ``starts[p]`` to region s of frame ``starts[p] + span``.
    """
    features, starts = _checked_chunk(features, span, starts)
    frames, regions, _ = features.shape
    counts = np.full(frames, regions) if counts is None else np.asarray(counts, dtype=np.float64)
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        return _track_scores(features, span, starts, counts, normalize)


def _track_scores(features: np.ndarray, span: int, starts: np.ndarray, counts: np.ndarray,
                  normalize: bool) -> np.ndarray:
    dtype = np.float64 if features.dtype == np.float64 else np.float32
    unit = _unit_rows(features.astype(dtype, copy=False))
    # Eq. 5 for every adjacent pair of frames at once: C_t = max(0, cos(f(z_t), f(z_{t+1}))).
    adjacent = np.maximum(unit[:-1] @ unit[1:].transpose(0, 2, 1), 0)
    out = adjacent[starts].copy()
    for step in range(1, span):
        # Eq. 4: S(i, j) = (j-i-1)/(j-i) S(i, j-1) C_{j-1}, for every start at once. The
        # normalised form divides by the regions of the intermediate frame j-1 instead (and
        # undoes the 1/n), which keeps every value in [0, 1].
        middle = starts + step
        out = out @ adjacent[middle]
        if normalize:
            out /= np.maximum(counts[middle], 1)[:, None, None].astype(dtype)
        else:
            out *= step / (step + 1)
    if normalize and span > 1:
        out **= 1.0 / span  # per-step score: comparable across gaps
    return out


@dataclass
class TrackPairs:
    """Kept region pairs of one chunk: frame offsets, region indices, per-step scores."""

    offset_a: np.ndarray  # (P,) frame i (offset within the chunk)
    offset_b: np.ndarray  # (P,) frame i + k
    region_a: np.ndarray  # (P,) index of z_i^r among frame i's regions
    region_b: np.ndarray  # (P,) index of z_{i+k}^s among frame i+k's regions
    score: np.ndarray  # (P,)

    def __len__(self) -> int:
        return len(self.score)


def select_track_pairs(scores: np.ndarray, starts: np.ndarray, span: int, threshold: float,
                       counts: np.ndarray | None = None) -> TrackPairs:
    """Each region's best track end, kept when its score is above ``threshold``.

    ``scores`` is :func:`track_scores`' output for ``starts``; ``counts`` (per frame) marks
    the padded regions, which neither start nor end a track.
    """
    scores = np.asarray(scores)
    starts = np.asarray(starts, dtype=np.int64)
    _, regions, _ = scores.shape
    if counts is not None:
        counts = np.asarray(counts)
        index = np.arange(regions)
        valid_a = index[None, :] < counts[starts][:, None]
        valid_b = index[None, :] < counts[starts + span][:, None]
        scores = np.where(valid_b[:, None, :], scores, -np.inf)
    else:
        valid_a = np.ones(scores.shape[:2], bool)
    best = scores.argmax(axis=2)  # (starts, R): s = argmax_s' S(z_i^r, z_{i+k}^s')
    best_score = np.take_along_axis(scores, best[..., None], axis=2)[..., 0]
    keep = valid_a & (best_score > threshold)
    which, region_a = np.nonzero(keep)
    return TrackPairs(offset_a=starts[which], offset_b=starts[which] + span, region_a=region_a,
                      region_b=best[which, region_a], score=best_score[which, region_a])


def greedy_tracks(features: np.ndarray, span: int, starts: np.ndarray | list[int] | None = None,
                  counts: np.ndarray | list[int] | None = None, normalize: bool = True,
                  blas_threads: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sec. 5's greedy recursive matching from every region of frame i to frame i + ``span``.

    Arguments as :func:`track_scores` (``counts`` also keeps padded regions from being
    matched). With s_0 = r and s_{m+1} = argmax_s d_cos(f(z_{i+m}^{s_m}), f(z_{i+m+1}^s)) (the
    minimum distance, before the clip, which would tie every negative cosine),
    the track of z_i^r ends at z_{i+n}^{s_n} with the cumulative score
    prod_m max(0, d_cos(f(z_{i+m}^{s_m}), f(z_{i+m+1}^{s_{m+1}}))) (Eq. 5 at each step;
    one term of Eq. 4's sum), or with ``normalize`` its n-th root, the per-step score.

    Returns:
        ``(ends, scores)``, each ``(len(starts), R)``: entry ``[p, r]`` is the end region
        s_n of region r of frame ``starts[p]`` and its track's score.
    """
    features, starts = _checked_chunk(features, span, starts)
    frames, regions, _ = features.shape
    counts = np.full(frames, regions) if counts is None else np.asarray(counts, dtype=np.int64)
    dtype = np.float64 if features.dtype == np.float64 else np.float32
    unit = _unit_rows(features.astype(dtype, copy=False))
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        cosines = unit[:-1] @ unit[1:].transpose(0, 2, 1)  # (T-1, R, R): frame t to frame t+1
    # A padded region of frame t+1 is never the match (-1 is below every real clipped cosine).
    real_next = np.arange(regions)[None, None, :] < counts[1:, None, None]
    cosines = np.where(real_next, cosines, -1.0)
    best = cosines.argmax(axis=2)  # (T-1, R): s = argmin_s' d(z_t^r, z_{t+1}^s') (Sec. 5)
    match = np.maximum(np.take_along_axis(cosines, best[..., None], axis=2)[..., 0], 0)  # Eq. 5 of that match
    at = np.broadcast_to(np.arange(regions), (len(starts), regions)).copy()
    score = np.ones((len(starts), regions), dtype)
    for step in range(span):
        # The recursion, every start and region at once: multiply in this step's Eq. 5
        # score, then move to the matched region of the next frame.
        frame = (starts + step)[:, None]
        score *= match[frame, at]
        at = best[frame, at]
    if normalize and span > 1:
        score **= 1.0 / span  # per-step score, the chain's unit
    return at, score


def chunk_track_pairs(features: list[np.ndarray], span: int, threshold: float, center: bool | None = None,
                      matching: str = "chain") -> TrackPairs:
    """Kept pairs of one chunk from per-frame ``(R_t, D)`` feature arrays (padded to one array here).

    ``matching``: ``"chain"`` (Eq. 4 over every chain) or ``"greedy"`` (Sec. 5's nearest-region
    recursion); module docstring. ``center`` subtracts each frame's mean region feature
    first; by default the chain centres and the greedy matching uses the raw features.
    """
    if matching not in MATCHINGS:
        raise ValueError(f"matching={matching!r}: expected one of {', '.join(MATCHINGS)}")
    center = matching == "chain" if center is None else center
    frames = len(features)
    counts = np.array([len(f) for f in features])
    dims = max((f.shape[1] for f in features if f.ndim == 2 and len(f)), default=1)
    padded = np.zeros((frames, max(counts.max(initial=0), 1), dims), np.float32)
    for t, f in enumerate(features):
        if len(f):
            padded[t, : len(f)] = f - f.mean(axis=0, keepdims=True) if center else f
    starts = np.arange(0, frames - span, span)
    if not len(starts):
        empty = np.zeros(0, np.int64)
        return TrackPairs(empty, empty, empty, empty, np.zeros(0, np.float32))
    if matching == "chain":
        return select_track_pairs(track_scores(padded, span, starts, counts), starts, span, threshold, counts)
    ends, scores = greedy_tracks(padded, span, starts, counts)
    keep = (np.arange(padded.shape[1])[None, :] < counts[starts][:, None]) & (scores > threshold)
    which, region_a = np.nonzero(keep)
    return TrackPairs(offset_a=starts[which], offset_b=starts[which] + span, region_a=region_a,
                      region_b=ends[which, region_a], score=scores[which, region_a])


def ground_truth_pairs(boxes: list[np.ndarray | None], span: int) -> list[tuple[int, int]]:
    """Frame pairs (i, i + span), i mod span == 0, whose two frames both have an annotated box.

    The ground-truth tracks method pairs the annotated box of frame i with that of frame
    i + k: the object's own track.
    """
    def annotated(box) -> bool:
        return box is not None and len(box) == 4 and box[2] > 0 and box[3] > 0

    return [(i, i + span) for i in range(0, len(boxes) - span, span) if annotated(boxes[i]) and annotated(boxes[i + span])]


def track_precision_recall(pairs: TrackPairs, proposals: list[np.ndarray], boxes: list[np.ndarray | None],
                           span: int) -> dict[str, float]:
    """Kept pairs of one chunk against its annotated boxes (IoU >= 0.5 at both ends).

    - ``correct``: kept pairs whose start and end regions both overlap the object's box
      at IoU >= 0.5 (precision = correct / kept);
    - ``trackable``: regions on the object in frame i of a frame pair whose frame i + k
      has a region on the object too; ``recalled``: those whose kept pair ends on the
      object (recall = recalled / trackable);
    - ``chance_pairs``: the expected number of correct pairs if each trackable frame
      pair's kept pairs joined random regions (sum over kept pairs of the share of
      regions on the object at each end), so chance precision = chance_pairs / kept.

    Returns counts (summed over chunks by the caller) under those names plus ``kept``.
    """
    on_object = []
    for regions, box in zip(proposals, boxes):
        regions = np.asarray(regions).reshape(-1, 4)
        if box is None or len(box) != 4 or box[2] <= 0 or box[3] <= 0 or not len(regions):
            on_object.append(np.zeros(len(regions), bool))
        else:
            on_object.append(box_iou(regions, np.asarray(box, np.float64)[None])[:, 0] >= IOU_MATCH)
    correct = np.array([on_object[a][r] and on_object[b][s] for a, b, r, s in
                        zip(pairs.offset_a, pairs.offset_b, pairs.region_a, pairs.region_b)], bool)
    chance = sum(on_object[a].mean() * on_object[b].mean() if len(on_object[a]) and len(on_object[b]) else 0.0
                 for a, b in zip(pairs.offset_a, pairs.offset_b))
    trackable = recalled = 0
    kept_end = {(int(a), int(r)): int(s) for a, r, s in zip(pairs.offset_a, pairs.region_a, pairs.region_b)}
    for a in range(0, len(proposals) - span, span):
        b = a + span
        if not on_object[b].any():
            continue
        for r in np.nonzero(on_object[a])[0]:
            trackable += 1
            end = kept_end.get((a, int(r)))
            recalled += end is not None and bool(on_object[b][end])
    return {"kept": float(len(pairs)), "correct": float(correct.sum()), "chance_pairs": float(chance),
            "trackable": float(trackable), "recalled": float(recalled)}


def precision_recall(counts: dict[str, float]) -> dict[str, float]:
    """``tracks/precision``, ``tracks/recall`` and ``tracks/chance_precision`` from summed counts (NaN when undefined)."""
    kept, trackable = counts.get("kept", 0.0), counts.get("trackable", 0.0)
    nan = float("nan")
    return {"tracks/precision": counts["correct"] / kept if kept else nan,
            "tracks/chance_precision": counts["chance_pairs"] / kept if kept else nan,
            "tracks/recall": counts["recalled"] / trackable if trackable else nan}


def _checked_chunk(features, span: int, starts) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's (frames, regions, dims) features and the start frames of its tracks, checked."""
    features = np.asarray(features)
    if features.ndim != 3:
        raise ValueError(f"features must be (frames, regions, dims), got shape {features.shape}")
    frames = features.shape[0]
    if span < 1:
        raise ValueError(f"span must be >= 1, got {span}")
    starts = np.arange(0, frames - span, span) if starts is None else np.asarray(starts, dtype=np.int64)
    if starts.size and (starts.min() < 0 or starts.max() + span >= frames):
        raise ValueError(f"starts {starts.tolist()} with span {span} leave the chunk of {frames} frames")
    return features, starts
