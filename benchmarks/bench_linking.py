"""Benchmark: the tracks stage as a Ray Data job against linking every chunk on the driver.

A features stage of ``--chunks`` chunks (60 frames x ``--regions`` regions x 1,024-d
float16, the region-feature actors' layout), written as several Parquet files with the
rows of each chunk spread over them, is linked two ways in the same run:

- the baseline, what the stage did before: the driver reads every feature row, builds
  each chunk's matrices and links the chunks one after another (``link_chunk`` on each,
  the same science);
- ``datasets.video.regions.compute_tracks``: ``read_parquet`` ->
  ``groupby(["video", "chunk"]).map_groups(link_chunk)``, one CPU task per chunk.

Reported: wall seconds of each, and how much the driver's resident memory grew during
each (peak RSS over its start, sampled). The baseline's memory grows with the dataset (the paper's 120K chunks hold
terabytes of features); the Ray Data driver's does not. Both give the same pairs.

    python -m benchmarks.bench_linking [--chunks 40] [--regions 100]
    python -m benchmarks.run linking
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.machine import command_line, machine

# Threshold 0: every region's best track is kept, so the pairs' output is part of the cost.
# (On these features the per-step score of even a persistent region is ~0.02 at R = 100,
# k = 10: it averages over every chain of regions, see datasets.video.tracks.)
FRAMES, GAP, THRESHOLD, DIMS = 60, 10, 0.0, 1024


def write_features(folder: Path, chunks: int, regions: int, files: int = 4) -> int:
    """The features stage's files; returns the bytes of feature matrices written."""
    from datasets.video.regions import FEATURE_SCHEMA

    rng = np.random.default_rng(0)
    writers = [pq.ParquetWriter(folder / f"{i}.parquet", FEATURE_SCHEMA) for i in range(files)]
    total = 0
    for c in range(chunks):
        rows = []
        # Regions that persist through the chunk (a base per region, new noise per frame),
        # ReLU-like, so that tracks score above the threshold and pairs are kept.
        base = rng.normal(size=(regions, DIMS))
        for t in range(FRAMES):
            feats = np.maximum(base + 0.3 * rng.normal(size=(regions, DIMS)), 0).astype(np.float16)
            boxes = rng.integers(0, 100, (regions, 4)).tolist()
            rows.append({"video": f"v{c // 4:04d}", "chunk": c % 4, "chunk_offset": t, "frame_index": 60 * (c % 4) + t,
                         "num_boxes": regions, "dim": DIMS, "features": feats.tobytes(), "boxes": boxes,
                         "truth_box": None})
            total += feats.nbytes
        for i, writer in enumerate(writers):  # each chunk's frames spread over every file
            writer.write_table(pa.Table.from_pylist(rows[i::files], schema=FEATURE_SCHEMA))
    for writer in writers:
        writer.close()
    return total


def link_on_driver(folder: Path) -> int:
    """The old way: every feature row in the driver, then chunk after chunk."""
    from datasets.video.regions import FEATURE_SCHEMA, link_chunk

    table = pq.ParquetDataset(sorted(folder.glob("*.parquet")), schema=FEATURE_SCHEMA).read()
    by_chunk = defaultdict(list)
    for row in table.to_pylist():
        by_chunk[(row["video"], row["chunk"])].append(row)
    return sum(link_chunk(pa.Table.from_pylist(rows, schema=FEATURE_SCHEMA), FRAMES, GAP, THRESHOLD)["num_pairs"][0].as_py()
               for _, rows in sorted(by_chunk.items()))


def measure(call) -> tuple[float, float, object]:
    """Wall seconds, the driver's peak RSS growth in MB (sampled every 20 ms), the call's value.

    RSS rather than tracemalloc: tracemalloc crashed the driver beside Ray's threads.
    """
    import threading

    import psutil

    process, peak, done = psutil.Process(), [0], threading.Event()
    start_rss = process.memory_info().rss

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss - start_rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        value = call()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    return seconds, peak[0] / 2**20, value


def run(chunks: int = 40, regions: int = 100) -> dict:
    from datasets.ray_connection import init_ray
    from datasets.video.regions import compute_tracks

    init_ray()
    with tempfile.TemporaryDirectory(prefix="dssl-linking-") as tmp:
        features = Path(tmp) / "features"
        features.mkdir()
        feature_bytes = write_features(features, chunks, regions)
        driver_s, driver_mb, driver_pairs = measure(lambda: link_on_driver(features))
        ray_s, ray_mb, (counters, _) = measure(
            lambda: compute_tracks(SimpleNamespace(data=features), FRAMES, GAP, THRESHOLD, Path(tmp) / "tracks"))
    return {"machine": machine(), "command": command_line(),
            "setting": f"{chunks} chunks x {FRAMES} frames x {regions} regions x {DIMS}-d float16, gap {GAP}",
            "feature_megabytes": round(feature_bytes / 2**20, 1),
            "driver_loop_seconds": round(driver_s, 1), "driver_loop_rss_growth_megabytes": round(driver_mb, 1),
            "ray_data_seconds": round(ray_s, 1), "ray_data_driver_rss_growth_megabytes": round(ray_mb, 1),
            "driver_memory_ratio": round(driver_mb / max(ray_mb, 1e-3), 1),
            "same_pairs": driver_pairs == counters["track_pairs"], "pairs": counters["track_pairs"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--regions", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(run(args.chunks, args.regions), indent=2))
