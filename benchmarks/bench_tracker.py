"""Benchmark: how good the unsupervised tracks are on the synthetic videos, against chance,
and how that moves with the track threshold and the frame gap.

On the ``synthetic-video`` source's defaults (exact object boxes in every frame) it builds
or reuses the stages of ``method=region_tracker`` (frames, pairs, proposals, region
features from a random-init ResNet-18 or ``--tracker-weights``) and links tracks at each
threshold and gap (only that stage is recomputed). Reported per setting: kept pairs,
precision (both ends on the object at IoU >= 0.5), chance precision (random regions of
the same frames) and recall.

    python -m benchmarks.bench_tracker [--thresholds 0 0.2 0.25 0.3 0.35] [--gaps 2 5 13]
    python -m benchmarks.run tracker
"""
from __future__ import annotations

import argparse
import dataclasses
import time

from benchmarks.machine import command_line, machine
from trainables.config import TrialConfig

THRESHOLDS = (0.0, 0.2, 0.25, 0.3, 0.35)
GAPS = (2, 5, 13)


def run(thresholds=THRESHOLDS, gaps=GAPS, tracker_weights: str = "") -> dict:
    trial = TrialConfig().override({"method": "region_tracker", "method.tracker_weights": tracker_weights})
    result = {"machine": machine(), "command": command_line(), "source": "synthetic-video defaults",
              "tracker": tracker_weights or "random-init resnet18"}
    started = time.perf_counter()
    for gap in gaps:
        for threshold in thresholds:
            method = dataclasses.replace(trial.method, frame_gap=gap, track_threshold=threshold)
            stage = method.track_stage(trial)
            c = stage.counters
            name = f"k={gap} t={threshold}"
            result[f"{name}/pairs"] = c.get("track_pairs", 0)
            for key in ("precision", "chance_precision", "recall"):
                result[f"{name}/{key}"] = c.get(key, float("nan"))
            if c.get("chance_precision"):
                result[f"{name}/precision_over_chance"] = c["precision"] / c["chance_precision"]
    result["seconds"] = time.perf_counter() - started
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", nargs="+", type=float, default=list(THRESHOLDS))
    parser.add_argument("--gaps", nargs="+", type=int, default=list(GAPS))
    parser.add_argument("--tracker-weights", default="")
    args = parser.parse_args()
    for key, value in run(args.thresholds, args.gaps, args.tracker_weights).items():
        print(f"{key}: {value}")
