"""Benchmark: what the Region Tracker's ``roi_size`` costs a training step, and what it does
to the region branch's gradient when a batch holds few regions.

layer4 runs in training mode on the step's regions alone, so at ``roi_size=2`` (1 x 1 after
layer4) its batch norm normalises one value per region (``trainables/region_moco.py``).
Per ``roi_size``: the time of one optimiser step of ``RegionMoCo`` (forward, backward,
SGD) on a batch whose every sample kept its region (the most region work a step can do),
best of ``repeats`` after a warm-up step, and the ratio of the region loss's gradient at
conv1 to the frame loss's at initialisation with 2 regions in a batch of 4 (median over
``seeds``).

    python -m benchmarks.bench_region_roi [--roi-sizes 2 4 7] [--batch 32] [--image-size 32]
    python -m benchmarks.run region_roi
"""
from __future__ import annotations

import argparse
import statistics

import torch

from benchmarks.machine import best_of, command_line, machine
from trainables.region_moco import RegionMoCo

ROI_SIZES = (2, 4, 7)


def model(roi_size: int, region_weight: float = 0.5, seed: int = 0) -> RegionMoCo:
    torch.manual_seed(seed)
    return RegionMoCo(arch="resnet18", dim=128, queue_size=128, temperature=0.1, roi_size=roi_size,
                      region_weight=region_weight)


def batch(n: int, size: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    im_q, im_k = torch.randn(n, 3, size, size, generator=g), torch.randn(n, 3, size, size, generator=g)
    xy = torch.rand(n, 2, generator=g) * size / 2
    wh = size / 4 + torch.rand(n, 2, generator=g) * size / 4
    box_q = torch.cat([xy, wh], 1)
    box_k = torch.cat([xy + torch.randn(n, 2, generator=g), wh], 1).clamp(min=0)
    return im_q, im_k, box_q, box_k


def step_seconds(roi_size: int, n: int, size: int, repeats: int) -> float:
    net = model(roi_size)
    optimiser = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9)
    im_q, im_k, box_q, box_k = batch(n, size, 0)
    valid = torch.ones(n, dtype=torch.bool)

    def step():
        optimiser.zero_grad()
        net(im_q, im_k, box_q, box_k, valid).loss.backward()
        optimiser.step()

    step()  # warm-up: allocator, oneDNN kernels
    return best_of(repeats, step)


def gradient_ratio(roi_size: int, seed: int, size: int) -> float:
    """conv1 gradient norm of the region loss alone over the frame loss alone, 2 regions of 4."""
    valid = torch.tensor([True, True, False, False])
    norms = []
    for weight in (0.0, 1.0):
        net = model(roi_size, weight, seed)
        im_q, im_k, box_q, box_k = batch(4, size, seed + 1)
        net(im_q, im_k, box_q, box_k, valid).loss.backward()
        norms.append(net.encoder_q.backbone.conv1.weight.grad.norm().item())
    return norms[1] / norms[0]


def run(roi_sizes=ROI_SIZES, n: int = 32, size: int = 32, repeats: int = 5, seeds: int = 4) -> dict:
    result = {"machine": machine(), "command": command_line(), "batch": n, "image_size": size}
    steps = {roi: step_seconds(roi, n, size, repeats) for roi in roi_sizes}
    for roi, seconds in steps.items():
        result[f"roi{roi}_step_s"] = round(seconds, 4)
        result[f"roi{roi}_step_over_roi{roi_sizes[0]}"] = round(seconds / steps[roi_sizes[0]], 3)
        ratio = statistics.median(gradient_ratio(roi, seed, size) for seed in range(seeds))
        result[f"roi{roi}_conv1_gradient_region_over_frame"] = round(ratio, 3)
    print(result)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roi-sizes", type=int, nargs="+", default=list(ROI_SIZES))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args(argv)
    return run(tuple(args.roi_sizes), args.batch, args.image_size, args.repeats, args.seeds)


if __name__ == "__main__":
    main()
