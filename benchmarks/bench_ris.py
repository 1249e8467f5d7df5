"""Benchmark: the vectorised RIS against the plain per-target loop at ALOI's scale.

ALOI (Sec. 4.1) gives 1,000 objects x 72 viewpoints, one local trajectory per object;
a ResNet-50 layer gives 2,048 units. The features here are ReLU'd random projections of
an object code plus a viewpoint code, so units are partly object-selective and have many
tied zeros, like real post-ReLU activations.

The loop (``benchmarks.reference_ris``) re-sorts every unit for every target and sign,
so its cost is linear in the number of targets; it is timed on a subset of targets and
extrapolated linearly to all of them, which the output says plainly.

    python -m benchmarks.bench_ris [--objects 1000] [--loop-targets 20]
    python -m benchmarks.run ris
"""
from __future__ import annotations

import argparse
import math
import time
import tracemalloc

import numpy as np
import torch

from benchmarks.machine import command_line, machine, peak_rss_mb
from benchmarks.reference_ris import target_invariance
from trainables.invariance import RIS_SIGN_RULES, representation_invariance_score

# The targets for the full ALOI scale on a 2-core machine.
TARGET_SECONDS = 5.0
TARGET_SPEEDUP = 100.0


def aloi_like_features(
    objects: int = 1000, views: int = 72, units: int = 2048, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features, targets, trajectories)``: ReLU'd random projections, float32.

    Sample ``(o, v)`` gets ``relu(W @ (object_o + 0.8 * view_v + 0.5 * noise))``; its target
    is the object, its trajectory the object's viewpoint sweep.
    """
    rng = np.random.default_rng(seed)
    latent = 64
    object_code = rng.standard_normal((objects, latent), dtype=np.float32)
    view_code = rng.standard_normal((views, latent), dtype=np.float32)
    targets = np.repeat(np.arange(objects), views)
    view = np.tile(np.arange(views), objects)
    z = object_code[targets] + 0.8 * view_code[view]
    z += 0.5 * rng.standard_normal(z.shape, dtype=np.float32)
    projection = rng.standard_normal((latent, units), dtype=np.float32) / math.sqrt(latent)
    features = z @ projection
    np.maximum(features, 0.0, out=features)
    return features, targets, np.zeros_like(targets)


def time_vectorised(features, targets, trajectories, repeats: int, sign: str = "per_target") -> tuple[float, dict]:
    """Best wall time of ``repeats`` calls, and the scores."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        scores = representation_invariance_score(features, targets, trajectories, (10, 25), sign)
        best = min(best, time.perf_counter() - start)
    return best, scores


def time_loop(features, targets, trajectories, loop_targets: int) -> tuple[float, float]:
    """``(setup seconds, mean seconds per target)`` of the reference loop."""
    start = time.perf_counter()
    units = np.ascontiguousarray(features.T)  # as reference_ris does once
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for y in np.unique(targets)[:loop_targets]:
        in_target = targets == y
        members = [
            np.flatnonzero(in_target & (trajectories == t))
            for t in np.unique(trajectories[in_target])
        ]
        target_invariance(units, in_target, members)
    return setup, (time.perf_counter() - start) / loop_targets


def run(
    objects: int = 1000,
    views: int = 72,
    units: int = 2048,
    loop_targets: int = 20,
    repeats: int = 3,
    seed: int = 0,
    sign: str = "per_target",
) -> dict:
    """Time both implementations on the same data; print a report and return the figures."""
    if not 1 <= loop_targets <= objects:
        raise ValueError(f"loop_targets must be in [1, {objects}], got {loop_targets}")
    features, targets, trajectories = aloi_like_features(objects, views, units, seed)
    rss_data = peak_rss_mb()

    vectorised_s, scores = time_vectorised(features, targets, trajectories, repeats, sign)
    rss_vectorised = peak_rss_mb()
    tracemalloc.start()  # numpy reports its buffers to tracemalloc; untimed extra call
    representation_invariance_score(features, targets, trajectories, (10, 25), sign)
    working_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()

    setup_s, per_target_s = time_loop(features, targets, trajectories, loop_targets)
    loop_extrapolated_s = setup_s + per_target_s * objects
    speedup = loop_extrapolated_s / vectorised_s

    result = {
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "command": command_line(),
        "samples": int(features.shape[0]),
        "units": units,
        "targets": objects,
        "sign": sign,
        "ris_top10": round(scores[10], 3),
        "ris_top25": round(scores[25], 3),
        "vectorised_s_best_of": repeats,
        "vectorised_s": round(vectorised_s, 3),
        "loop_targets_timed": loop_targets,
        "loop_s_on_subset": round(setup_s + per_target_s * loop_targets, 3),
        "loop_s_per_target": round(per_target_s, 3),
        "loop_s_extrapolated": round(loop_extrapolated_s, 1),
        "speedup": round(speedup, 1),
        "features_mb": round(features.nbytes / 2**20, 1),
        "vectorised_working_mb": round(working_mb, 1),
        "peak_rss_mb_after_data": round(rss_data, 1),
        "peak_rss_mb_after_vectorised": round(rss_vectorised, 1),
        "peak_rss_mb_after_loop": round(peak_rss_mb(), 1),
        "meets_time_target": vectorised_s <= TARGET_SECONDS,
        "meets_speedup_target": speedup >= TARGET_SPEEDUP,
    }
    print(
        f"RIS benchmark on {result['machine']} (torch threads {result['torch_threads']})\n"
        f"  command: {result['command']}\n"
        f"  data: {result['samples']} samples x {units} units x {objects} targets "
        f"(float32, {result['features_mb']} MB)\n"
        f"  vectorised: {vectorised_s:.3f} s (best of {repeats}); "
        f"RIS ({sign}) top10 {scores[10]:.2f}, top25 {scores[25]:.2f}\n"
        f"  loop: {result['loop_s_on_subset']:.1f} s on {loop_targets} of {objects} targets "
        f"({per_target_s:.3f} s per target); EXTRAPOLATED linearly to all {objects} "
        f"targets: {loop_extrapolated_s:.0f} s (not measured)\n"
        f"  speedup (extrapolated loop / vectorised): {speedup:.0f}x\n"
        f"  memory: vectorised working set {working_mb:.0f} MB (tracemalloc); peak RSS "
        f"{rss_data:.0f} MB after data, {rss_vectorised:.0f} MB after vectorised, "
        f"{result['peak_rss_mb_after_loop']:.0f} MB after loop\n"
        f"  targets: <= {TARGET_SECONDS:.0f} s -> "
        f"{'met' if result['meets_time_target'] else 'MISSED'}; "
        f">= {TARGET_SPEEDUP:.0f}x -> {'met' if result['meets_speedup_target'] else 'MISSED'}"
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--views", type=int, default=72)
    parser.add_argument("--units", type=int, default=2048)
    parser.add_argument("--loop-targets", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sign", choices=RIS_SIGN_RULES, default="per_target", help="RIS sign rule")
    args = parser.parse_args(argv)
    return run(args.objects, args.views, args.units, args.loop_targets, args.repeats, args.seed, args.sign)


if __name__ == "__main__":
    main()
