"""Benchmark: region features for the tracks, regions/s on CPU (one core, one torch thread).

The ``region_features`` stage (``datasets.video.regions``) runs
``trainables.regions.Layer3RegionFeatures`` in Ray Data actors, one per core: ResNet-18's
trunk to layer3 on every chunk frame, then ``torchvision.ops.roi_align`` (2 x 2 cells) on
its selective-search boxes. This times (best of 3) the feature function itself on synthetic video
frames (``datasets.synthetic.video``) with random boxes, at the synthetic default
(128x96, 100 regions per frame) and at the paper's proposal count on 160x120 frames
(300 regions), and splits the time into the trunk and the pooling.

    python -m benchmarks.bench_region_features [--frames 64]
    python -m benchmarks.run region_features
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.machine import best_of, command_line, machine
from datasets.synthetic.video import render_video
from trainables.regions import Layer3RegionFeatures


def random_boxes(rng, count: int, width: int, height: int) -> np.ndarray:
    w = rng.integers(8, width, count)
    h = rng.integers(8, height, count)
    return np.stack([rng.integers(0, width - w + 1), rng.integers(0, height - h + 1), w, h], 1).astype(np.float32)


def measure(frames: int, width: int, height: int, regions: int, repeats: int = 3) -> dict:
    _, images, _ = render_video(0, frames, width, height)
    rng = np.random.default_rng(0)
    boxes = [random_boxes(rng, regions, width, height) for _ in images]
    fn = Layer3RegionFeatures()()  # sets one torch thread, as in an actor
    fn(images[:4], boxes[:4])  # warm-up
    out = fn(images, boxes)
    seconds = best_of(repeats, lambda: fn(images, boxes))
    trunk_seconds = best_of(repeats, lambda: fn(images, [b[:0] for b in boxes]))
    return {"frames": frames, "size": f"{width}x{height}", "regions_per_frame": regions, "dim": int(out[0].shape[1]),
            "seconds": seconds, "regions_per_second": frames * regions / seconds,
            "frames_per_second": frames / seconds, "trunk_share": trunk_seconds / seconds}


def run(frames: int = 64) -> dict:
    torch.manual_seed(0)
    small = measure(frames, 128, 96, 100)
    paper = measure(frames, 160, 120, 300)
    result = {"machine": machine(), "command": command_line(), "torch_threads": torch.get_num_threads()}
    for name, figures in (("synthetic_default", small), ("160x120_R300", paper)):
        result |= {f"{name}/{k}": v for k, v in figures.items()}
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    for key, value in run(parser.parse_args().frames).items():
        print(f"{key}: {value}")
