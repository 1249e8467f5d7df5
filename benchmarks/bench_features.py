"""Benchmark: frozen-feature extraction on CPU, the evaluation stage's Ray Data path
against a plain DataLoader loop, in the same run.

The evaluation stage (``trainables.features.RayDataFeatures``) reads and embeds images in
a pool of Ray Data actors (one CPU each here, the backbone built once per actor) and
caches the features as Parquet; the baseline is ``extract_features``: one process, a
``DataLoader`` (no workers) and torch's own threads. Same images (PNG, as ALOI's), same
backbone (the default preset's ResNet-18 at 64 px, random weights: speed does not
depend on them), same batch size. Also timed: a rescore of the same weights, which reads
the Parquet cache and extracts nothing.

    python -m benchmarks.bench_features [--images 2000] [--arch resnet18] [--image-size 64]
    python -m benchmarks.run features
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from benchmarks.machine import command_line, machine, peak_rss_mb


def write_images(folder: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    """`count` smooth random RGB PNGs (upsampled noise: compresses like photos, not like noise)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        path = folder / f"{i:05d}.png"
        Image.fromarray(small).resize((size, size), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def run(images: int = 2000, arch: str = "resnet18", image_size: int = 64, batch_size: int = 256,
        actors: int = 0) -> dict:
    from datasets.ray_connection import init_ray
    from trainables.augment import eval_transform
    from trainables.evaluation import TrainedBackbone
    from trainables.features import RayDataFeatures, extract_features
    from trainables.models import resnet_backbone

    torch.manual_seed(0)
    trunk, _ = resnet_backbone(arch)
    weights = TrainedBackbone(trunk.eval(), arch, digest=f"bench-{arch}-random")
    resources = init_ray(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), images, image_size)

        start = time.perf_counter()
        baseline, _, _ = extract_features(trunk, paths, batch_size, "cpu", eval_transform(image_size))
        loop_s = time.perf_counter() - start

        ray_path = RayDataFeatures(weights, image_size, batch_size, cache=str(Path(tmp) / "cache"),
                                   max_actors=actors)
        start = time.perf_counter()
        cold, index = ray_path(paths)
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        ray_path(paths)  # the same weights and images again: read from the cache
        warm_s = time.perf_counter() - start

    assert ray_path.extracted == images and ray_path.reused == images
    max_difference = float(np.abs(cold[np.argsort(index)] - baseline).max())
    result = {
        "machine": machine(),
        "command": command_line(),
        "images": images,
        "arch": arch,
        "image_size": image_size,
        "batch_size": batch_size,
        "ray_cpus": resources.get("CPU"),
        "torch_threads_in_process": torch.get_num_threads(),
        "dataloader_images_per_second": round(images / loop_s, 1),
        "ray_data_images_per_second": round(images / cold_s, 1),
        "ray_data_cached_images_per_second": round(images / warm_s, 1),
        "ray_data_over_dataloader": round(loop_s / cold_s, 2),
        "cached_over_dataloader": round(loop_s / warm_s, 1),
        "max_abs_feature_difference": max_difference,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    for key, value in result.items():
        print(f"{key:>36}: {value}")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--arch", default="resnet18", choices=torchvision.models.list_models(module=torchvision.models))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--actors", type=int, default=0, help="Ray Data actors (0: one per CPU)")
    args = parser.parse_args(argv)
    return run(args.images, args.arch, args.image_size, args.batch_size, args.actors)


if __name__ == "__main__":
    main()
