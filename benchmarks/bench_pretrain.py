"""Benchmark: MoCo v2 pretraining throughput at the default preset, with and without data.

One Ray Train worker of the default preset (resnet18, 64 px, global batch 64, K = 256,
2 torch threads) on random uint8 images, so no disk or decoding is involved:

- `pretrain_images_per_second`: augmentation (two MoCo v2 views per image, in the
  training process, as with `cpus_per_worker=1`) plus the model step (forward of both
  encoders, backward, SGD, momentum update, enqueue);
- `model_step_images_per_second`: the model step alone on pre-augmented batches;
- `augment_images_per_second`: the two-view augmentation alone.

The gap between the first two is the data path's cost.

    python -m benchmarks.bench_pretrain [--steps 5] [--threads 2]
    python -m benchmarks.run pretrain
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmarks.machine import command_line, machine
from orchestrator.config import PRESETS
from trainables.augment import TwoCropsTransform, mocov2_transform
from trainables.moco import MoCo


def _augment(transform: TwoCropsTransform, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    views = [transform(image) for image in images]
    return torch.stack([q for q, _ in views]), torch.stack([k for _, k in views])


def run(arch: str = "resnet18", image_size: int = 64, batch_size: int = 64,
        queue_size: int = PRESETS["default"].method.queue_size,
        steps: int = 5, warmup: int = 2, threads: int = 2, seed: int = 0) -> dict:
    """Time `steps` training steps each way after `warmup` steps; print and return the figures."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps} and {warmup}")
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = MoCo(arch, dim=128, queue_size=queue_size, momentum=0.99, temperature=0.2).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.03,
                                momentum=0.9, weight_decay=1e-4)
    transform = TwoCropsTransform(mocov2_transform(image_size, (0.2, 1.0)))
    # Source images at the trial's size, as the synthetic sets are generated.
    source = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8)

    def model_step(im_q: torch.Tensor, im_k: torch.Tensor) -> None:
        loss = model(im_q, im_k).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def timed(fn, repeats: int) -> float:
        for _ in range(warmup):
            fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return time.perf_counter() - start

    fixed_views = _augment(transform, source)
    augment_s = timed(lambda: _augment(transform, source), steps)
    model_s = timed(lambda: model_step(*fixed_views), steps)
    full_s = timed(lambda: model_step(*_augment(transform, source)), steps)

    images = steps * batch_size
    result = {
        "machine": machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "command": command_line(),
        "arch": arch,
        "image_size": image_size,
        "batch_size": batch_size,
        "queue_size": queue_size,
        "steps_timed": steps,
        "pretrain_images_per_second": round(images / full_s, 1),
        "model_step_images_per_second": round(images / model_s, 1),
        "augment_images_per_second": round(images / augment_s, 1),
        "data_path_share_of_step": round(1.0 - model_s / full_s, 3),
    }
    print(
        f"MoCo v2 pretraining benchmark on {result['machine']} (torch {result['torch']}, "
        f"{result['torch_threads']} threads)\n"
        f"  command: {result['command']}\n"
        f"  {arch}, {image_size} px, batch {batch_size}, K {queue_size}, {steps} steps after {warmup} warm-up\n"
        f"  augmentation + model step: {result['pretrain_images_per_second']:.1f} images/s\n"
        f"  model step alone:          {result['model_step_images_per_second']:.1f} images/s\n"
        f"  augmentation alone:        {result['augment_images_per_second']:.1f} images/s (two views each)\n"
        f"  data path share of a step: {100 * result['data_path_share_of_step']:.0f}%"
    )
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    return run(args.arch, args.image_size, args.batch_size, steps=args.steps, threads=args.threads)


if __name__ == "__main__":
    main()
