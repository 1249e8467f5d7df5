"""Benchmark: the GPU path, measured. MoCo v2 at the `paper` preset (ResNet-50, 224 px,
global batch 256, K = 65,536) on one GPU, part by part:

1. ``step``: the training step (the project's MoCo model, loss and ``train_step``) on
   tensors already on the GPU: fp32 vs bf16 autocast x NCHW vs channels_last, eager;
   images/s after warm-up steps, and peak GPU memory (``torch.cuda.max_memory_allocated``).
2. ``data``: the real data path (JPEG files written here, decoded and augmented by the
   method's own dataset, a DataLoader with the machine's CPU workers, pinned memory): the
   data alone, the step fed by it, and augmentation on the GPU (files read by the loader,
   decoded with ``torchvision.io.decode_jpeg`` on the device, the same v2 views applied on
   CUDA tensors), so the bottleneck has a name.
3. ``train``: one Ray Train run of the `paper` preset with one GPU worker (NCCL), through
   the project's entry point (``trainables.pretrain.train_loop_per_worker``) on the
   generated image folder, for ``--train-steps`` steps: what Train and the data path cost
   against part 1.
4. ``features``: the evaluation stage's extraction: Ray Data (``RayDataFeatures``, one
   GPU actor) against an in-process DataLoader loop, on the same JPEGs at 224 px.
5. ``ris``: RIS at ALOI's scale (72,000 samples x 2,048 units, synthetic features); numpy
   on the CPU, as the code has no GPU path for it: its time on the GPU machine's CPU.
6. ``compile``: part 1's step under ``torch.compile`` (the two encoders; the queue's
   bookkeeping stays eager), fastest eager settings first, while the budget lasts.

Every figure is printed as it is measured and the JSON (``--out``) rewritten after each,
so a run that is cut off still reports what it measured. Each part is guarded: a part
that raises prints its traceback and the next part runs; the exit status is 1 if any
part failed. ``--budget-s`` bounds the whole run: parts that would not fit are skipped,
and an alarm cuts one that overruns (``<part>/cut``, its figures so far kept; not a
failure). Nothing is downloaded (random weights).

    python -m benchmarks.bench_gpu --out /tmp/gpu.json     # one GPU, about 7 minutes
    python -m benchmarks.bench_gpu --smoke                 # every part, tiny, on CPU
    python -m benchmarks.run gpu                           # the full run with CUDA, else the smoke
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.machine import command_line, machine

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gpu.json"
PARTS = ("step", "data", "train", "features", "ris", "compile")
# (autocast dtype or None for fp32, channels_last): fp32 NCHW first, the ratios' baseline.
STEP_GRID = ((None, False), (torch.bfloat16, False), (None, True), (torch.bfloat16, True))


@dataclass(frozen=True)
class Sizes:
    """What each part measures, and how long it may take."""

    arch: str
    image_size: int
    batch_size: int
    queue_size: int
    steps: int  # timed steps per configuration (parts 1 and 6)
    warmup: int  # untimed steps before them (cuDNN autotuning, allocator, compilation)
    images: int  # JPEG files written (the pretraining folder, also the features' input)
    source_hw: tuple[int, int]  # their size: ImageNet's typical 375 x 500
    data_batches: int  # batches timed per data-path figure, after the loader's first wave
    train_steps: int  # steps of the Ray Train run
    feature_images: int  # of the written JPEGs, how many part 4 embeds
    eval_batch_size: int
    ris_objects: int
    ris_views: int
    ris_units: int
    cpus: int  # the Train worker's CPUs (its DataLoader gets all but one on a GPU)
    compile_backend: str
    compile_configs: int  # how many of part 1's settings part 6 compiles
    part_caps_s: dict  # part -> seconds it may start new measurements for
    compile_reserve_s: float  # a compiled configuration starts only with this much budget left


FULL = Sizes(arch="resnet50", image_size=224, batch_size=256, queue_size=65536, steps=20, warmup=5,
             images=6400, source_hw=(375, 500), data_batches=28, train_steps=200, feature_images=3200,
             eval_batch_size=512,
             ris_objects=1000, ris_views=72, ris_units=2048, cpus=max(1, (os.cpu_count() or 2) - 1),
             compile_backend="inductor", compile_configs=len(STEP_GRID),
             part_caps_s={"step": 90, "data": 75, "train": 150, "features": 60, "ris": 60, "compile": 1e9},
             compile_reserve_s=100)
# Every part for a step or two at toy sizes on CPU: a check that the script runs, not a figure.
# torch.compile traces with the "eager" backend here (inductor's C++ build takes minutes on CPU).
SMOKE = Sizes(arch="resnet18", image_size=32, batch_size=8, queue_size=16, steps=1, warmup=1,
              images=16, source_hw=(40, 48), data_batches=2, train_steps=2, feature_images=16,
              eval_batch_size=8,
              ris_objects=10, ris_views=8, ris_units=32, cpus=1, compile_backend="eager", compile_configs=1,
              part_caps_s={p: 1e9 for p in PARTS}, compile_reserve_s=0)


class BudgetExceeded(Exception):
    """The run's time budget ran out inside a part."""


class Report:
    """Figures in order; each printed (flushed) and the JSON rewritten as it arrives."""

    def __init__(self, out: Path | None):
        self.out = out
        self.figures: dict = {}

    def add(self, key: str, value) -> None:
        if isinstance(value, float):
            value = round(value, 4)
        self.figures[key] = value
        print(f"{key}: {value}", flush=True)
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.out.with_suffix(self.out.suffix + ".tmp")
            tmp.write_text(json.dumps(self.figures, indent=2, default=str) + "\n")
            tmp.replace(self.out)  # a reader never sees half a file


class Budget:
    """The run's deadline; `alarm` interrupts a part that would overrun it."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    @contextlib.contextmanager
    def alarm(self):
        def overrun(signum, frame):
            raise BudgetExceeded("the --budget-s deadline passed in this part")

        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = signal.signal(signal.SIGALRM, overrun)
        signal.setitimer(signal.ITIMER_REAL, max(self.left(), 0.01))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def settings_name(amp_dtype, channels_last: bool) -> str:
    return f"{'bf16' if amp_dtype is not None else 'fp32'}_{'channels_last' if channels_last else 'nchw'}"


def trial_config(sizes: Sizes, root: Path, cache: Path, use_gpu: bool):
    """The `paper` preset on the generated folder, one worker, `sizes`' scale."""
    from orchestrator.config import preset

    steps_per_epoch = sizes.images // sizes.batch_size
    epochs = max(1, math.ceil(sizes.train_steps / steps_per_epoch))
    changes = {"arch": sizes.arch, "image_size": sizes.image_size, "batch_size": sizes.batch_size,
               "method.queue_size": sizes.queue_size, "eval_batch_size": sizes.eval_batch_size,
               "num_workers": 1, "use_gpu": use_gpu, "cpus_per_worker": sizes.cpus, "epochs": epochs,
               "checkpoint_every": epochs, "data_cache": str(cache), "data.pretrain.root": str(root)}
    return preset("paper").override(changes)


def write_jpegs(root: Path, count: int, hw: tuple[int, int], classes: int = 8, threads: int = 4) -> list[Path]:
    """`count` smooth random JPEGs (upsampled noise, so they compress like photos) in
    `classes` class folders of ``root/train``; their paths."""
    from torchvision.io import encode_jpeg, write_file

    g = torch.Generator().manual_seed(0)
    h, w = hw
    paths = [root / "train" / f"class{i % classes}" / f"{i:06d}.jpg" for i in range(count)]
    for folder in {p.parent for p in paths}:
        folder.mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> None:
        small = torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=g)
        image = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        write_file(str(path), encode_jpeg((image[0] * 255).to(torch.uint8), quality=90))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, paths))
    return paths


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def make_step(trial, device: torch.device, amp_dtype, channels_last: bool, compile_backend: str | None = None):
    """A closure running the project's training step (``trainables.pretrain.train_step``)
    with the given precision and layout, optionally with compiled encoders."""
    from trainables.pretrain import build_model, build_optimizer, device_settings, train_step

    model = build_model(trial).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_backend:
        # A fresh cache per configuration: the encoders of every configuration share one
        # forward, whose recompile limit would otherwise send later ones back to eager.
        torch._dynamo.reset()
        # The encoders hold the compute; MoCo's queue bookkeeping stays eager.
        model.encoder_q = torch.compile(model.encoder_q, backend=compile_backend)
        model.encoder_k = torch.compile(model.encoder_k, backend=compile_backend)
    model.train()
    optimizer, _ = build_optimizer(model, trial)
    settings = dataclasses.replace(device_settings(device.type), amp=amp_dtype is not None,
                                   amp_dtype=amp_dtype or torch.bfloat16, loss_scaling=False,
                                   channels_last=channels_last)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # bf16 and fp32 need no loss scaling
    labels = torch.zeros(trial.batch_size, dtype=torch.long, device=device)

    def step(im_q: torch.Tensor, im_k: torch.Tensor) -> torch.Tensor:
        return train_step(trial.method, model, optimizer, scaler, (im_q, im_k), labels, device.type, settings).loss

    return step


def time_steps(step, inputs, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """(seconds of the warm-up steps, seconds of `steps` timed steps)."""
    start = time.perf_counter()
    for _ in range(warmup):
        step(*inputs)
    sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(*inputs)
    float(loss.detach())  # the last step's loss on the host: every queued kernel has run
    return warm, time.perf_counter() - start


def step_configuration(report: Report, trial, sizes: Sizes, device, amp_dtype, channels_last,
                       compile_backend: str | None = None) -> float:
    """Part 1's figures for one configuration; its images/s."""
    name = settings_name(amp_dtype, channels_last) + ("_compiled" if compile_backend else "")
    free_memory(device)
    g = torch.Generator(device=device).manual_seed(0)
    shape = (sizes.batch_size, 3, sizes.image_size, sizes.image_size)
    inputs = [torch.randn(shape, generator=g, device=device) for _ in range(2)]
    step = make_step(trial, device, amp_dtype, channels_last, compile_backend)
    warm_s, timed_s = time_steps(step, inputs, sizes.steps, sizes.warmup, device)
    rate = sizes.steps * sizes.batch_size / timed_s
    prefix = "compile" if compile_backend else "step"
    report.add(f"{prefix}/{name}/images_per_second", rate)
    if compile_backend:
        report.add(f"{prefix}/{name}/warmup_s_with_compilation", warm_s)
    if device.type == "cuda":
        report.add(f"{prefix}/{name}/peak_gpu_memory_gib", torch.cuda.max_memory_allocated(device) / 2**30)
    baseline = report.figures.get(f"step/{settings_name(*STEP_GRID[0])}/images_per_second")
    if baseline:
        report.add(f"{prefix}/{name}/over_fp32_nchw", rate / baseline)
    del step, inputs
    free_memory(device)
    return rate


def part_step(report: Report, ctx: dict) -> None:
    sizes, device, started = ctx["sizes"], ctx["device"], time.monotonic()
    for amp_dtype, channels_last in STEP_GRID:
        if time.monotonic() - started > sizes.part_caps_s["step"]:
            report.add(f"step/{settings_name(amp_dtype, channels_last)}/skipped", "part time cap")
            continue
        ctx["step_rates"][(amp_dtype, channels_last)] = step_configuration(
            report, ctx["trial"], sizes, device, amp_dtype, channels_last)


def loader_for(dataset, sizes: Sizes, batches: int, workers: int, pin_memory: bool, collate_fn=None):
    """A DataLoader drawing `batches` batches from one iterator (no epoch boundary, whose
    worker restart would land inside the timing)."""
    from torch.utils.data import DataLoader, RandomSampler

    sampler = RandomSampler(dataset, replacement=True, num_samples=batches * sizes.batch_size)
    return DataLoader(dataset, batch_size=sizes.batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, drop_last=True, collate_fn=collate_fn)


def steady_rate(batches, consume, first_wave: int, timed: int, batch_size: int) -> tuple[float, float]:
    """Images/s of `consume` over `timed` batches after the loader's first `first_wave`
    batches (worker start-up, and every worker's first batch arriving at once), and the
    seconds to the first batch."""
    start = time.perf_counter()
    first_batch_s = None
    for i, batch in enumerate(batches):
        consume(batch)
        if first_batch_s is None:
            first_batch_s = time.perf_counter() - start
        if i + 1 == first_wave:
            timed_start = time.perf_counter()
        if i + 1 == first_wave + timed:
            break
    return timed * batch_size / (time.perf_counter() - timed_start), first_batch_s


def part_data(report: Report, ctx: dict) -> None:
    from datasets.image_folder import ReplaceCorrupt
    from trainables.pretrain import cpu_split, device_settings

    sizes, device, trial, started = ctx["sizes"], ctx["device"], ctx["trial"], time.monotonic()
    settings = device_settings(device.type, device.type == "cuda" and torch.cuda.is_bf16_supported())
    _, workers = cpu_split(sizes.cpus, device)
    first_wave = max(1, workers)
    timed = max(sizes.data_batches, first_wave)
    report.add("data/loader_workers", workers)
    dataset = trial.method.train_dataset({"pretrain": ctx["root"]}, trial)  # the method's decode + views
    views = dataset.transform

    def to_device(batch):
        (im_q, im_k), _, _ = batch
        return im_q.to(device, non_blocking=True), im_k.to(device, non_blocking=True)

    def over_cap() -> bool:
        return time.monotonic() - started > sizes.part_caps_s["data"]

    # The data alone: decode + two views on the CPU workers, then the copy to the device.
    def data_only(batch):
        to_device(batch)
        sync(device)

    loader = loader_for(ReplaceCorrupt(dataset), sizes, first_wave + timed, workers, settings.pin_memory)
    rate, first_s = steady_rate(loader, data_only, first_wave, timed, sizes.batch_size)
    report.add("data/cpu_augment/images_per_second", rate)
    report.add("data/cpu_augment/first_batch_s", first_s)

    # The step the training loop runs (its device settings), fed by that loader.
    amp = settings.amp_dtype if settings.amp else None
    step = make_step(trial, device, amp, settings.channels_last)
    shape = (sizes.batch_size, 3, sizes.image_size, sizes.image_size)
    step(torch.randn(shape, device=device), torch.randn(shape, device=device))  # cuDNN autotuning, untimed
    if over_cap():
        report.add("data/fed_step/skipped", "part time cap")
    else:
        loader = loader_for(ReplaceCorrupt(dataset), sizes, first_wave + timed, workers, settings.pin_memory)
        rate, _ = steady_rate(loader, lambda batch: step(*to_device(batch)), first_wave, timed, sizes.batch_size)
        sync(device)
        report.add(f"data/fed_step_{settings_name(amp, settings.channels_last)}/images_per_second", rate)
        step_rate = ctx["step_rates"].get((amp, settings.channels_last))
        if step_rate:
            report.add("data/fed_step_over_step_only", rate / step_rate)
            bottleneck = "data" if report.figures["data/cpu_augment/images_per_second"] < step_rate else "step"
            report.add("data/bottleneck", bottleneck)

    # Augmentation on the device: the loader only reads the files' bytes, so its first
    # wave is short; the views cost Python time per image, so fewer batches are timed.
    if over_cap():
        report.add("data/gpu_augment/skipped", "part time cap")
    else:
        gpu_views = GpuViews(views, device)
        files = FileBytes(dataset.paths)
        gpu_wave, gpu_timed = min(first_wave, 2), max(1, timed // 4)
        loader = loader_for(files, sizes, gpu_wave + gpu_timed, workers, False, collate_fn=list)
        rate, _ = steady_rate(loader, lambda batch: (gpu_views(batch), sync(device)), gpu_wave, gpu_timed,
                              sizes.batch_size)
        report.add("data/gpu_augment/images_per_second", rate)
        if not over_cap():
            loader = loader_for(files, sizes, gpu_wave + gpu_timed, workers, False, collate_fn=list)
            rate, _ = steady_rate(loader, lambda batch: step(*gpu_views(batch)), gpu_wave, gpu_timed,
                                  sizes.batch_size)
            sync(device)
            report.add(f"data/gpu_augment_fed_step_{settings_name(amp, settings.channels_last)}/images_per_second",
                       rate)
    del step
    free_memory(device)


class FileBytes(torch.utils.data.Dataset):
    """The raw bytes of image files (a uint8 tensor each), for decoding on the device."""

    def __init__(self, paths):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from torchvision.io import read_file

        return read_file(str(self.paths[index]))


class GpuViews:
    """A batch of JPEG bytes -> the two MoCo v2 views, decoded and augmented on `device`.

    Decoding is batched (``decode_jpeg`` on a list, nvJPEG on CUDA); the views are the
    method's own v2 transform applied image by image, because one v2 call draws one set
    of random parameters for all of a batched tensor, which would give every image of
    the batch the same jitter, blur and flip.
    """

    def __init__(self, views, device: torch.device):
        from torchvision.io import ImageReadMode

        self.views, self.device, self.mode = views, device, ImageReadMode.RGB

    def __call__(self, encoded: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.io import decode_jpeg

        images = decode_jpeg(encoded, mode=self.mode, device=self.device)
        pairs = [self.views(image) for image in images]
        return torch.stack([q for q, _ in pairs]), torch.stack([k for _, k in pairs])


def part_train(report: Report, ctx: dict) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer

    from datasets.ray_connection import init_ray
    from trainables.pretrain import train_loop_per_worker
    from trainables.trial import scaling_config

    sizes, trial, budget = ctx["sizes"], ctx["trial"], ctx["budget"]
    if budget.left() < min(sizes.part_caps_s["train"], 60):
        report.add("train/skipped", "budget")
        return
    init_ray(quiet=True)
    steps_per_epoch = sizes.images // sizes.batch_size
    report.add("train/epochs", trial.epochs)
    report.add("train/steps", trial.epochs * steps_per_epoch)
    events = ctx["tmp"] / "train-events.jsonl"
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config={"trial": trial}, scaling_config=scaling_config(trial),
        run_config=ray.train.RunConfig(name="bench-gpu", storage_path=str(ctx["tmp"] / "ray_results"),
                                       callbacks=[_report_log(events)]))
    start = time.perf_counter()
    result = trainer.fit()
    fit_s = time.perf_counter() - start
    epochs = [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
    rates = [e["pretrain/images_per_second"] for e in epochs]
    report.add("train/fit_s", fit_s)
    report.add("train/images_per_second_whole_fit", trial.epochs * steps_per_epoch * sizes.batch_size / fit_s)
    if rates:
        report.add("train/images_per_second_first_epoch", rates[0])
        steady = statistics.median(rates[1:]) if len(rates) > 1 else rates[0]
        report.add("train/images_per_second_median_later_epochs", steady)
        settings = ctx.get("loop_settings")
        step_rate = ctx["step_rates"].get(settings) if settings else None
        if step_rate:
            report.add("train/over_step_only", steady / step_rate)
        fed = report.figures.get(f"data/fed_step_{settings_name(*settings)}/images_per_second") if settings else None
        if fed:  # the same step and data path without Ray: what Train itself costs
            report.add("train/over_fed_step", steady / fed)
    report.add("train/final_loss", float(result.metrics["pretrain/loss"]))


def _report_log(path: Path):
    """A Train callback (it runs in the controller) appending rank 0's report per epoch to `path`."""
    import ray.train

    class ReportLog(ray.train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            with open(path, "a") as f:
                f.write(json.dumps(metrics[0]) + "\n")

    return ReportLog()


def part_features(report: Report, ctx: dict) -> None:
    from datasets.ray_connection import init_ray
    from trainables.augment import eval_transform
    from trainables.evaluation import TrainedBackbone
    from trainables.features import RayDataFeatures, extract_features
    from trainables.models import resnet_backbone
    from trainables.pretrain import cpu_split

    sizes, device, started = ctx["sizes"], ctx["device"], time.monotonic()
    paths = ctx["paths"][:sizes.feature_images]
    torch.manual_seed(0)
    trunk, _ = resnet_backbone(sizes.arch)
    weights = TrainedBackbone(trunk.eval(), sizes.arch, digest=f"bench-gpu-{sizes.arch}-random")
    use_gpu = device.type == "cuda"
    report.add("features/images", len(paths))

    # Baseline: one process, a DataLoader with the worker count training uses, the model on the device.
    _, workers = cpu_split(sizes.cpus, device)
    start = time.perf_counter()
    extract_features(trunk.to(device), paths, sizes.eval_batch_size, device, eval_transform(sizes.image_size),
                     num_workers=workers)
    report.add("features/dataloader_images_per_second", len(paths) / (time.perf_counter() - start))
    trunk.cpu()
    free_memory(device)

    if time.monotonic() - started > sizes.part_caps_s["features"]:
        report.add("features/ray_data/skipped", "part time cap")
    else:
        init_ray(quiet=True)
        features = RayDataFeatures(weights, sizes.image_size, sizes.eval_batch_size, cache=str(ctx["tmp"] / "cache"),
                                   use_gpu=use_gpu)
        start = time.perf_counter()
        features(paths)
        rate = len(paths) / (time.perf_counter() - start)
        report.add("features/ray_data_images_per_second", rate)
        report.add("features/ray_data_over_dataloader", rate / report.figures["features/dataloader_images_per_second"])


def part_ris(report: Report, ctx: dict) -> None:
    import numpy as np

    from benchmarks.bench_ris import aloi_like_features
    from trainables.invariance import representation_invariance_score

    sizes = ctx["sizes"]
    x, targets, trajectories = aloi_like_features(sizes.ris_objects, sizes.ris_views, sizes.ris_units)
    report.add("ris/samples_x_units", f"{x.shape[0]} x {x.shape[1]}")
    start = time.perf_counter()
    scores = representation_invariance_score(x, targets, trajectories, (10, 25))
    report.add("ris/cpu_s", time.perf_counter() - start)
    report.add("ris/top10", float(np.round(scores[10], 3)))


def part_compile(report: Report, ctx: dict) -> None:
    sizes, device, budget = ctx["sizes"], ctx["device"], ctx["budget"]
    # The fastest eager settings first: the likeliest to be adopted.
    grid = sorted(STEP_GRID, key=lambda s: -ctx["step_rates"].get(s, 0.0))[:sizes.compile_configs]
    for amp_dtype, channels_last in grid:
        name = settings_name(amp_dtype, channels_last)
        if budget.left() < sizes.compile_reserve_s:
            report.add(f"compile/{name}_compiled/skipped", "budget")
            continue
        step_configuration(report, ctx["trial"], sizes, device, amp_dtype, channels_last, sizes.compile_backend)
        eager = ctx["step_rates"].get((amp_dtype, channels_last))
        if eager:
            report.add(f"compile/{name}_compiled/over_eager", report.figures[f"compile/{name}_compiled/images_per_second"] / eager)


PART_FUNCTIONS = {"step": part_step, "data": part_data, "train": part_train, "features": part_features,
                  "ris": part_ris, "compile": part_compile}


def run(smoke: bool | None = None, out: Path | None = DEFAULT_OUT, budget_s: float = 450.0,
        parts: tuple[str, ...] = PARTS, train_steps: int | None = None) -> dict:
    """Every part in order; the figures. Raises RuntimeError (after reporting) if a part
    failed. `smoke` None: the full run where CUDA is, else the smoke."""
    total_start = time.perf_counter()
    cuda = torch.cuda.is_available()
    smoke = (not cuda) if smoke is None else smoke
    sizes = SMOKE if smoke else FULL
    if train_steps is not None:
        sizes = dataclasses.replace(sizes, train_steps=train_steps)
    device = torch.device("cuda" if cuda and not smoke else "cpu")
    budget = Budget(budget_s)
    threads = torch.get_num_threads()
    if smoke:  # toy models: more threads than the Train worker's CPUs only fight over the cores
        torch.set_num_threads(sizes.cpus)
    try:
        return _run_parts(sizes, smoke, device, budget, out, parts, total_start)
    finally:
        torch.set_num_threads(threads)


def _run_parts(sizes: Sizes, smoke: bool, device: torch.device, budget: Budget, out: Path | None,
               parts: tuple[str, ...], total_start: float) -> dict:
    from trainables.pretrain import device_settings

    report = Report(out)
    report.add("mode", "smoke (CPU, toy sizes: not performance)" if smoke else "full")
    report.add("machine", machine())
    report.add("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    report.add("torch", torch.__version__)
    report.add("command", command_line())
    report.add("sizes", {k: v for k, v in dataclasses.asdict(sizes).items() if k != "part_caps_s"})
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes, as in the training loop
    settings = device_settings(device.type, device.type == "cuda" and torch.cuda.is_bf16_supported())
    failed = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp_name:
        tmp = Path(tmp_name)
        start = time.perf_counter()
        root = tmp / "images"
        paths = write_jpegs(root, sizes.images, sizes.source_hw, threads=max(1, sizes.cpus))
        report.add("setup/write_jpegs_s", time.perf_counter() - start)
        ctx = {"sizes": sizes, "device": device, "budget": budget, "tmp": tmp, "root": root, "paths": paths,
               "trial": trial_config(sizes, root, tmp / "cache", use_gpu=device.type == "cuda"),
               "step_rates": {},
               "loop_settings": (settings.amp_dtype if settings.amp else None, settings.channels_last)}
        for part in parts:
            if budget.left() <= 0:
                report.add(f"{part}/skipped", "budget")
                continue
            print(f"== {part} ==", flush=True)
            start = time.perf_counter()
            try:
                with budget.alarm():
                    PART_FUNCTIONS[part](report, ctx)
            except BudgetExceeded as cut:  # not a failure: its figures so far stand
                report.add(f"{part}/cut", str(cut))
            except Exception as error:  # one broken part must not hide the others' figures
                traceback.print_exc()
                sys.stderr.flush()
                report.add(f"{part}/error", f"{type(error).__name__}: {error}")
                failed.append(part)
            report.add(f"{part}/part_s", time.perf_counter() - start)
    report.add("total_s", time.perf_counter() - total_start)
    if failed:
        raise RuntimeError(f"bench_gpu: parts failed: {', '.join(failed)} (figures so far in {out})")
    return report.figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every part for a step or two, toy sizes, on CPU")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON of the figures (default {DEFAULT_OUT})")
    parser.add_argument("--budget-s", type=float, default=450.0, help="the whole run's time limit (default 450)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--train-steps", type=int, default=None, help=f"steps of the Ray Train run (default {FULL.train_steps})")
    args = parser.parse_args(argv)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    if unknown := [p for p in parts if p not in PARTS]:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    try:
        run(smoke=args.smoke or None, out=args.out, budget_s=args.budget_s, parts=parts,
            train_steps=args.train_steps)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
