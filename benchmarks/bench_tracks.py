"""Benchmark: track linking (Appendix B, Eq. 4 and 5) for one 60-frame chunk, 300 regions per frame.

Two implementations of the same recursion on the same features, in the same run:

- ``track_scores`` (``datasets.video.tracks``): every adjacent-frame cosine matrix in one
  batched matrix product, then one batched product per step of the span for every start;
- the straightforward loop, Eq. 5 and Eq. 4 as written: per pair of regions the clipped
  cosine (a numpy dot) and Eq. 4's sum over the intermediate frame's regions in Python;
  timed on ``--literal-rows`` source regions of one start and scaled to the chunk;
- a faster loop with each of Eq. 4's sums as one numpy dot (still a Python loop over
  region pairs), timed on one start and scaled to the five.

The gap is k = 10 in a paper-sized chunk of 60 frames (starts 0, 10, ..., 40: 50 steps of Eq. 4), the
features 1,024-d (ROI-aligned 2 x 2 cells of ResNet-18's 256-channel layer3). Every start costs
the same, so the loops are timed on part of the work and scaled; their results are
checked against the vectorised ones.

    python -m benchmarks.bench_tracks [--literal-rows 2]
    python -m benchmarks.run tracks
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.machine import command_line, machine
from datasets.video.tracks import track_scores

TARGET_SPEEDUP = 50.0


def _unit(features: np.ndarray) -> np.ndarray:
    return features / np.linalg.norm(features, axis=-1, keepdims=True)


def literal_cosines(features: np.ndarray, span: int, start: int) -> list:
    """Eq. 5 between every adjacent pair of frames of one start, one region pair at a time."""
    norm = _unit(features[start: start + span + 1])
    regions = norm.shape[1]
    return [[[max(0.0, float(np.dot(norm[t][k], norm[t + 1][s]))) for s in range(regions)] for k in range(regions)]
            for t in range(span)]


def literal_loop_rows(cos: list, span: int, rows: int) -> np.ndarray:
    """Eq. 4 as written for the first ``rows`` source regions of one start: Python loops
    over region pairs and over k for the sum."""
    regions = len(cos[0])
    out = np.zeros((rows, regions))
    for r in range(rows):
        score = cos[0][r]
        for step in range(1, span):  # Eq. 4
            score = [step / (step + 1) * sum(score[k] * cos[step][k][s] for k in range(regions))
                     for s in range(regions)]
        out[r] = score
    return out


def dot_loop(features: np.ndarray, span: int, start: int) -> np.ndarray:
    """The same for every source region of one start, with each sum over k as one numpy dot."""
    norm = _unit(features[start: start + span + 1])
    regions = norm.shape[1]
    cos = np.zeros((span, regions, regions), np.float32)
    for t in range(span):  # Eq. 5
        for k in range(regions):
            for s in range(regions):
                cos[t, k, s] = max(0.0, float(np.dot(norm[t][k], norm[t + 1][s])))
    score = cos[0].copy()
    for step in range(1, span):  # Eq. 4
        new = np.zeros_like(score)
        for r in range(regions):
            for s in range(regions):
                new[r, s] = step / (step + 1) * float(np.dot(score[r], cos[step][:, s]))
        score = new
    return score


def run(literal_rows: int = 2, frames: int = 60, regions: int = 300, dims: int = 1024, span: int = 10) -> dict:
    rng = np.random.default_rng(0)
    features = np.maximum(rng.normal(size=(frames, regions, dims)), 0).astype(np.float32)  # ReLU-like features
    starts = np.arange(0, frames - span, span)

    started = time.perf_counter()
    fast = track_scores(features, span, starts, normalize=False)
    fast_seconds = time.perf_counter() - started
    started = time.perf_counter()
    track_scores(features, span, starts, normalize=False, blas_threads=None)
    default_threads_seconds = time.perf_counter() - started

    # Each start costs the same: time one (a few rows for the literal loop) and scale.
    started = time.perf_counter()
    dot = dot_loop(features, span, int(starts[0]))
    dot_seconds = (time.perf_counter() - started) * len(starts)
    started = time.perf_counter()
    cos = literal_cosines(features, span, int(starts[0]))
    cosine_seconds = time.perf_counter() - started
    started = time.perf_counter()
    literal = literal_loop_rows(cos, span, literal_rows)
    literal_seconds = (cosine_seconds + (time.perf_counter() - started) * regions / literal_rows) * len(starts)

    agree = bool(np.allclose(fast[0], dot, rtol=1e-3) and np.allclose(fast[0, :literal_rows], literal, rtol=1e-3))
    return {
        "machine": machine(), "command": command_line(),
        "chunk": f"{frames} frames x {regions} regions x {dims}-d, gap {span} ({len(starts)} starts)",
        "vectorised_seconds": fast_seconds,
        "vectorised_seconds_default_blas_threads": default_threads_seconds,
        "literal_loop_seconds_scaled": literal_seconds,
        "literal_loop_rows_timed": literal_rows,
        "speedup_vs_literal_loop": literal_seconds / fast_seconds,
        "dot_loop_seconds_scaled": dot_seconds,
        "speedup_vs_dot_loop": dot_seconds / fast_seconds,
        "results_agree": agree, "target_speedup": TARGET_SPEEDUP,
        "meets_target": bool(agree and min(literal_seconds, dot_seconds) / fast_seconds >= TARGET_SPEEDUP),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--literal-rows", type=int, default=2)
    for key, value in run(parser.parse_args().literal_rows).items():
        print(f"{key}: {value}")
