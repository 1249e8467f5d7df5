"""Benchmark: how much background a Frame Temporal Invariance positive pair shares (issue 21).

FTI's positives are frames k apart, (z_i, z_{i+k}) with i mod k == 0. In the synthetic
videos' first version (``background_motion="drift"``) the camera drifts a fraction of a
pixel per frame, so the pair shares almost its whole background and the contrastive task
can be solved without looking at the object. For each background motion this renders
the synthetic-video source's videos (24 x 80 frames, 128x96) and measures, at k = 2, 5, 13
(the frame-gap sweep's grid):

- ``shared``: the mean correlation of the pair's background pixels at the same places
  (outside both object boxes and the occluding bar; ``shared_background``): 1 = the
  same background, about 0 = nothing in common;
- ``retrieval``: how often the background's colour histogram alone (outside the object's
  box) finds z_i's video among the z_{i+k} of every video (``video_retrieval``; z_i's own
  image, the key of the pair before, left out). Keys of other videos are the negatives
  MoCo's queue mostly holds, so this is the part of the InfoNCE task that needs no object.
  ``retrieval_no_bar`` also leaves out pixels that never change (a bar standing still in
  the frame); ``object``: the same retrieval from the central half of the object's box,
  the thing FTI's pair should have in common. ``chance`` is 1 / videos.

Settings: the motion, its speed (frame widths per frame), the clutter tile side (x the
frame's longer side) and where the occluding bar is fixed (``frame`` / ``world``).

    python -m benchmarks.bench_video_background [--videos 24]
    python -m benchmarks.run video_background
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.machine import command_line, machine
from datasets.synthetic.video import (DEFAULT_BACKGROUND_SPEED, DEFAULT_BACKGROUND_TILE, DEFAULT_BAR, render_video,
                                      shared_background, video_retrieval)

# (motion, speed, tile, bar); the previous default: ("pan", 0.25, 1.3, "frame")
SETTINGS = [("drift", DEFAULT_BACKGROUND_SPEED, DEFAULT_BACKGROUND_TILE, DEFAULT_BAR),
            ("pan", 0.0, 1.3, "frame"), ("pan", 0.05, 1.3, "frame"), ("pan", 0.25, 1.3, "frame"),
            ("pan", 0.5, 1.3, "frame"), ("pan", 0.25, 1.3, "world"), ("pan", 0.25, 0.25, "frame"),
            ("pan", 0.25, 0.25, "world"), ("pan", 0.5, 0.25, "world")]
GAPS = (2, 5, 13)
FRAMES, WIDTH, HEIGHT = 80, 128, 96  # the synthetic-video source's defaults


def measure(videos: list[tuple[list[np.ndarray], np.ndarray]], gap: int) -> dict[str, float]:
    return {"shared": float(np.mean([shared_background(images, boxes, gap) for images, boxes in videos])),
            "retrieval": video_retrieval(videos, gap, "background"),
            "retrieval_no_bar": video_retrieval(videos, gap, "background_no_bar"),
            "object": video_retrieval(videos, gap, "object"), "chance": 1.0 / len(videos)}


def run(videos: int = 24) -> dict:
    started = time.perf_counter()
    rows = {}
    for motion, speed, tile, bar in SETTINGS:
        rendered = [render_video(n, FRAMES, WIDTH, HEIGHT, 0, motion, speed, tile, bar)[1:] for n in range(videos)]
        label = motion if motion == "drift" else f"pan {speed:g} tile {tile:g} bar {bar}"
        for gap in GAPS:
            for key, value in measure(rendered, gap).items():
                rows[f"{label} k={gap} {key}"] = round(value, 3)
    return {"machine": machine(), "command": command_line(), "videos": videos,
            "seconds": round(time.perf_counter() - started, 1), **rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    for key, value in run(parser.parse_args().videos).items():
        print(f"{key}: {value}")
