"""Benchmark: how good the unsupervised tracks are on the synthetic videos, against chance,
for both matchings (``chain``: centred Eq. 4; ``greedy``: Sec. 5's nearest-region
recursion on raw features), per track threshold and frame gap.

On the ``synthetic-video`` source's defaults (exact object boxes in every frame) it builds
or reuses the stages of ``method=region_tracker`` up to the region features (frames,
pairs, proposals, features from a random-init ResNet-18 or ``--tracker-weights``), then
links every chunk in this process for each matching, gap and threshold (each region's
best track end does not depend on the threshold, so one linking per matching and gap
serves every threshold). Reported per setting: kept pairs, precision (both ends on the
object at IoU >= 0.5), chance precision (what random regions of the same frame pairs
would give under the same annotated boxes), their ratio, recall, and ``hub_share``: the
share of a frame pair's kept pairs that end on its most common end region (mean over
frame pairs; near 1 when the tracks collapse onto one hub region). The stored
``tracks`` stage is checked against the in-process linking at the method's gap and
threshold, for both matchings (``stage_check``).

The matchings' scores live on different scales (raw ReLU features make every cosine
high), so each has its own thresholds.

    python -m benchmarks.bench_tracker [--thresholds 0 0.2 0.25 0.3 0.35]
        [--greedy-thresholds 0 0.97 0.98 0.985 0.99] [--gaps 2 5 13]
    python -m benchmarks.run tracker
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from collections import defaultdict

import numpy as np

from benchmarks.machine import command_line, machine
from trainables.config import TrialConfig

THRESHOLDS = (0.0, 0.15, 0.17, 0.19, 0.21, 0.25)
GREEDY_THRESHOLDS = (0.0, 0.97, 0.98, 0.985, 0.99)
GAPS = (2, 5, 13)
COUNTS = ("kept", "correct", "chance_pairs", "trackable", "recalled", "frame_pairs", "hub_share")


def link_all(chunks: list[list[dict]], gaps, thresholds: dict[str, tuple[float, ...]]) -> dict:
    """Summed ``track_precision_recall`` counts per (matching, gap, threshold) over the annotated chunks."""
    from datasets.video.regions import decode_chunk
    from datasets.video.tracks import TrackPairs, chunk_track_pairs, track_precision_recall

    totals: dict = defaultdict(lambda: dict.fromkeys(COUNTS, 0.0))
    for frames in chunks:
        features, boxes, truth = decode_chunk(frames)
        if all(box is None for box in truth):
            continue
        for gap in gaps:
            for matching, levels in thresholds.items():
                every = chunk_track_pairs(features, gap, -1.0, matching=matching)  # each region's best end
                for threshold in levels:
                    keep = every.score > threshold
                    kept = TrackPairs(*(getattr(every, f.name)[keep] for f in dataclasses.fields(TrackPairs)))
                    total = totals[(matching, gap, threshold)]
                    for key, value in track_precision_recall(kept, boxes, truth, gap).items():
                        total[key] += value
                    for start in np.unique(kept.offset_a):  # how many kept pairs share one end region
                        ends = kept.region_b[kept.offset_a == start]
                        total["hub_share"] += np.bincount(ends).max() / len(ends)
                        total["frame_pairs"] += 1
    return totals


def run(thresholds=THRESHOLDS, greedy_thresholds=GREEDY_THRESHOLDS, gaps=GAPS, tracker_weights: str = "",
        check_stage: bool = True) -> dict:
    from datasets.video.pipeline import read_stage_table
    from datasets.video.regions import FEATURE_SCHEMA
    from datasets.video.tracks import MATCHINGS, precision_recall

    trial = TrialConfig().override({"method": "region_tracker", "method.tracker_weights": tracker_weights})
    method = trial.method
    chunk_frames = method.source(trial).chunk_frames
    result = {"machine": machine(), "command": command_line(), "source": "synthetic-video defaults",
              "tracker": tracker_weights or "random-init resnet18"}
    started = time.perf_counter()
    features = method.feature_stage(trial)
    result["features_seconds"] = time.perf_counter() - started
    by_chunk: dict = defaultdict(list)
    for row in read_stage_table(features.data, None, FEATURE_SCHEMA).to_pylist():
        by_chunk[(row["video"], row["chunk"])].append(row)
    chunks = [sorted(rows, key=lambda r: r["chunk_offset"]) for _, rows in sorted(by_chunk.items())]
    chunks = [rows for rows in chunks if [r["chunk_offset"] for r in rows] == list(range(chunk_frames))]
    result["chunks"] = len(chunks)
    levels = {"chain": tuple(thresholds), "greedy": tuple(greedy_thresholds)}
    linked = time.perf_counter()
    totals = link_all(chunks, gaps, levels)
    result["linking_seconds"] = time.perf_counter() - linked
    for (matching, gap, threshold), counts in sorted(totals.items()):
        name = f"{matching} k={gap} t={threshold}"
        metrics = precision_recall(counts)
        result[f"{name}/pairs"] = int(counts["kept"])
        for key in ("precision", "chance_precision", "recall"):
            result[f"{name}/{key}"] = metrics[f"tracks/{key}"]
        result[f"{name}/hub_share"] = counts["hub_share"] / counts["frame_pairs"] if counts["frame_pairs"] else np.nan
        if metrics["tracks/chance_precision"] > 0:
            result[f"{name}/precision_over_chance"] = metrics["tracks/precision"] / metrics["tracks/chance_precision"]
    if check_stage:
        # The stage (Ray Data, one task per chunk) must find what this process found.
        for matching in MATCHINGS:
            threshold = levels[matching][len(levels[matching]) // 2]
            stage = dataclasses.replace(method, matching=matching, track_threshold=threshold).track_stage(trial)
            here = link_all(chunks, [method.frame_gap], {matching: (threshold,)})[(matching, method.frame_gap, threshold)]
            result[f"stage_check/{matching} k={method.frame_gap} t={threshold}"] = (
                stage.counters.get("track_pairs") == int(here["kept"])
                and np.isclose(stage.counters.get("precision", np.nan), precision_recall(here)["tracks/precision"],
                               equal_nan=True))
    result["seconds"] = time.perf_counter() - started
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", nargs="+", type=float, default=list(THRESHOLDS), help="chain matching's")
    parser.add_argument("--greedy-thresholds", nargs="+", type=float, default=list(GREEDY_THRESHOLDS))
    parser.add_argument("--gaps", nargs="+", type=int, default=list(GAPS))
    parser.add_argument("--tracker-weights", default="")
    parser.add_argument("--no-stage-check", action="store_true", help="skip the two tracks-stage runs")
    args = parser.parse_args()
    for key, value in run(args.thresholds, args.greedy_thresholds, args.gaps, args.tracker_weights,
                          not args.no_stage_check).items():
        print(f"{key}: {value}")
