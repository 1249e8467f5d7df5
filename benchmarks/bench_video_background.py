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
- ``retrieval``: how often the background alone finds z_i's video: the nearest of every
  z_{i+k} of every video to z_i (Hellinger affinity of 8x8x8 RGB histograms of the pixels
  outside the frame's object box: translation-invariant, as random crops make a
  network) comes from z_i's video. The partner is among those; keys of other videos
  are the negatives MoCo's queue mostly holds, so this is the part of the InfoNCE task
  that needs no object. ``retrieval_no_bar`` leaves the occluding bar out too (it
  stands still in the frame in every mode). ``chance`` is 1 / videos.

    python -m benchmarks.bench_video_background [--videos 24]
    python -m benchmarks.run video_background
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from benchmarks.machine import command_line, machine
from datasets.synthetic.video import render_video, shared_background

MOTIONS = [("drift", 0.25), ("pan", 0.0), ("pan", 0.05), ("pan", 0.25), ("pan", 0.5)]  # ("pan", 0.25): the default
GAPS = (2, 5, 13)
FRAMES, WIDTH, HEIGHT = 80, 128, 96  # the synthetic-video source's defaults


def background_histogram(image: np.ndarray, box: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Square roots of the 8x8x8 RGB histogram of the ``keep`` pixels outside the object box."""
    mask = keep.copy()
    x, y, w, h = box
    mask[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = False
    counts = cv2.calcHist([image], [0, 1, 2], mask.astype(np.uint8), [8, 8, 8], [0, 256] * 3).ravel()
    return np.sqrt(counts / max(1.0, counts.sum()))


def retrieval(videos: list[tuple[list[np.ndarray], np.ndarray]], gap: int, without_bar: bool) -> float:
    queries, keys, owner = [], [], []
    for number, (images, boxes) in enumerate(videos):
        stack = np.stack(images)
        keep = np.any(stack != stack[:1], axis=(0, 3)) if without_bar else np.ones(stack.shape[1:3], bool)
        for i in range(0, len(images) - gap, gap):
            queries.append(background_histogram(images[i], boxes[i], keep))
            keys.append(background_histogram(images[i + gap], boxes[i + gap], keep))
            owner.append(number)
    owner = np.array(owner)
    nearest = (np.stack(queries) @ np.stack(keys).T).argmax(1)
    return float((owner[nearest] == owner).mean())


def measure(videos: list[tuple[list[np.ndarray], np.ndarray]], gap: int) -> dict[str, float]:
    return {"shared": float(np.mean([shared_background(images, boxes, gap) for images, boxes in videos])),
            "retrieval": retrieval(videos, gap, False), "retrieval_no_bar": retrieval(videos, gap, True),
            "chance": 1.0 / len(videos)}


def run(videos: int = 24) -> dict:
    started = time.perf_counter()
    rows = {}
    for motion, speed in MOTIONS:
        rendered = [render_video(n, FRAMES, WIDTH, HEIGHT, 0, motion, speed)[1:] for n in range(videos)]
        label = motion if motion == "drift" else f"pan {speed:g}"
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
