"""Pretraining as a Ray Train loop (`ray.train.torch.TorchTrainer`, Train V2 API).

One function, `train_loop_per_worker({"trial": TrialConfig})`, runs on every worker. It
knows no method by name: it asks the trial's method (``trainables.methods``) for the
model, the dataset, the loss of a batch, a per-step hook and the backbone to evaluate.
It works with one worker and no process group (including Ray Train local mode,
`ScalingConfig(num_workers=0)`), with several CPU workers (gloo) and with GPUs (NCCL,
mixed precision).

Per epoch every worker calls `ray.train.report` with the same metrics (Ray keeps rank 0's):
`epoch`, `pretrain/loss` (mean over the global epoch), `pretrain/images_per_second`
(global), `pretrain/skipped_images` (unreadable images replaced this epoch, all
workers) and `pretrain/<name>` for each metric the method's `training_step` reports
(a `StepOutput`), averaged over the epoch's images like the loss. Rank 0 attaches `checkpoint.pt` every `checkpoint_every` epochs and on the
last. Evaluation is a stage of its own, after the Train run, reading the last checkpoint
(`trainables.evaluation.run_evaluation`, a Ray task of its own): no rank waits on it.
"""
from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray.train
import ray.train.torch
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from datasets.image_folder import ReplaceCorrupt
from datasets.registry import ConfigError
from datasets.storage import use_driver_env
from datasets.subsets import nested_subset
from trainables import distributed, optim
from trainables.config import TrialConfig, per_worker_batch
from trainables.methods.base import StepOutput, step_output

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


def seed_everything(*entropy: int) -> None:
    """Seed python, numpy and torch from a tuple of ints (e.g. seed, rank, epoch)."""
    seed = int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(trial: TrialConfig) -> nn.Module:
    """The method's model with the initial weights every rank (and a resume) starts from."""
    seed_everything(trial.seed)
    return trial.method.build_model(trial)


def build_optimizer(model: nn.Module, trial: TrialConfig):
    """The trial's optimizer (``trainables.optim``) on the method's parameter groups, with
    per-epoch cosine decay to 0 (or a constant rate)."""
    optimizer = optim.build(trial.optimizer, trial.method.parameter_groups(model, trial),
                            lr=trial.lr, momentum=trial.momentum, weight_decay=trial.weight_decay)
    if trial.cosine_schedule:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=trial.epochs)
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return optimizer, scheduler


def cpu_split(cpus: int, device: torch.device) -> tuple[int, int]:
    """`(torch threads, DataLoader worker processes)` for a worker with `cpus` CPUs.

    On a GPU the CPUs decode and augment (all but one, which feeds the GPU). On CPU the
    model and the augmentation share the cores without oversubscribing them: a quarter
    run loader processes (overlapping augmentation with the model step), the rest run
    torch's threads. Below 4 CPUs augmentation runs in the training process: measured at
    the default preset on 2 cores (benchmarks/bench_pretrain.py), a 2-thread step with
    in-process augmentation gives 53 images/s, a 1-thread step (41 images/s alone) fed by
    one loader process at most 41.
    """
    if cpus < 1:
        raise ValueError(f"cpus_per_worker must be >= 1, got {cpus}")
    if device.type == "cuda":
        return 1, cpus - 1
    loader_workers = cpus // 4
    return cpus - loader_workers, loader_workers


@dataclass(frozen=True)
class DeviceSettings:
    """How the training step uses its device; see :func:`device_settings`."""

    amp: bool  # autocast the forward pass to `amp_dtype`
    amp_dtype: torch.dtype
    loss_scaling: bool  # a GradScaler (fp16 only)
    channels_last: bool  # NHWC weights, so cuDNN runs its tensor-core convolutions without transposes
    pin_memory: bool  # page-locked batches, so the host-to-device copies are asynchronous
    cudnn_benchmark: bool  # cuDNN picks the fastest convolution for the fixed input size


def device_settings(device_type: str, bf16_supported: bool = False) -> DeviceSettings:
    """The training step's settings on a `device_type` ("cuda" or "cpu").

    On a GPU: mixed precision, bf16 where the card has it (fp32's range: no loss scaling),
    else fp16 with a GradScaler against gradient underflow; channels_last; pinned memory;
    cuDNN autotuning (the crop size is fixed). On CPU: fp32 and none of these.
    `benchmarks/bench_gpu.py` measures each against its alternative.
    """
    cuda = device_type == "cuda"
    dtype = torch.bfloat16 if bf16_supported else torch.float16
    return DeviceSettings(amp=cuda, amp_dtype=dtype, loss_scaling=cuda and dtype == torch.float16,
                          channels_last=cuda, pin_memory=cuda, cudnn_benchmark=cuda)


def train_step(method, model: nn.Module, optimizer, scaler, inputs, labels, device_type: str,
               settings: DeviceSettings) -> StepOutput:
    """One optimiser step of `method` on one batch (already on the device); its loss and metrics."""
    with torch.autocast(device_type=device_type, dtype=settings.amp_dtype, enabled=settings.amp):
        out = step_output(method.training_step(model, inputs, labels))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(out.loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return out


def add_weighted(sums: dict[str, torch.Tensor], values: dict[str, torch.Tensor], weight: int) -> None:
    """Add `weight` x each of `values` to its running sum in `sums` (float64, on the value's
    device: reading one back every step would stall the GPU's queue)."""
    for name, value in values.items():
        term = value.detach().to(torch.float64) * weight
        sums[name] = sums[name] + term if name in sums else term


def epoch_means(sums: dict[str, torch.Tensor], count: float) -> dict[str, float]:
    """Each of `sums` over all ranks, divided by `count` (the epoch's images on all ranks):
    ``pretrain/<name>``. One collective for all of them, in name order (the same on every rank)."""
    names = sorted(sums)
    if not names:
        return {}
    totals = distributed.all_reduce(torch.stack([sums[name] for name in names])).tolist()
    return {f"pretrain/{name}": total / max(count, 1) for name, total in zip(names, totals)}


def pretraining_root(trial: TrialConfig, role: str) -> Path:
    """The root the method reads for `role`: the source's, or with ``pretrain_corruption`` a
    corrupted copy of an image-folder root (``datasets.corruptions``; built once, in the cache)."""
    from datasets.cache import using_data_cache
    from datasets.corruptions import corrupted_image_folder
    from datasets.sources.base import IMAGE_FOLDER

    root = trial.root(role)
    if trial.method.roles[role].layout != IMAGE_FOLDER:
        return root
    with using_data_cache(trial.data_cache):
        return corrupted_image_folder(root, trial.pretrain_corruption, trial.pretrain_corruption_seed,
                                      trial.pretrain_jpeg_quality, trial.pretrain_salt_pepper_rate,
                                      trial.pretrain_blur_sigma)


def train_set(trial: TrialConfig) -> Dataset:
    """The method's training set, refused (ConfigError) when it cannot fill one global batch.

    The sweep's driver calls it before any trial starts (``orchestrator.sweep.prepare_data``),
    so a set that is too small is a configuration error there, not a traceback in a Train
    worker after the workers came up; each worker calls it again to build its loader.
    With ``drop_last`` sharding and batches, a rank gets no batch exactly when the set
    holds fewer items than the global batch. With ``pretrain_fraction`` < 1 it is the
    nested, fixed subset of the method's set (``datasets.subsets.nested_subset``).
    """
    roots = {role: pretraining_root(trial, role) for role in trial.method.roles}
    dataset = trial.method.train_dataset(roots, trial)
    if trial.pretrain_fraction < 1:
        dataset = Subset(dataset, nested_subset(len(dataset), trial.pretrain_fraction,
                                                trial.pretrain_subset_seed).tolist())
    if len(dataset) < trial.batch_size:
        where = ", ".join(f"data.{role} at {root}" for role, root in roots.items()) or f"method={trial.method.name}"
        raise ConfigError(f"{where}: {len(dataset)} training items for method={trial.method.name}, fewer than "
                          f"one global batch of {trial.batch_size} (batch_size); lower --set batch_size or add data")
    return dataset


def pretrain_loader(trial: TrialConfig, world_size: int, rank: int, loader_workers: int,
                    pin_memory: bool = False) -> DataLoader:
    """This worker's shard of the method's training set (:func:`train_set`), in full batches.

    The DistributedSampler is built here (not by `prepare_data_loader`) so that its
    shuffle is seeded from the trial's seed; `prepare_data_loader` then only moves the
    batches to the device.
    """
    dataset = train_set(trial)
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=trial.seed, drop_last=True)
    loader = DataLoader(ReplaceCorrupt(dataset), batch_size=per_worker_batch(trial.batch_size, world_size),
                        sampler=sampler, drop_last=True, num_workers=loader_workers, pin_memory=pin_memory)
    if rank == 0:
        whole = dataset.dataset if isinstance(dataset, Subset) else dataset
        where = str(getattr(whole, "root", f"method={trial.method.name}"))
        for warning in trial.method.data_warnings(len(dataset), where):
            log.warning(warning)
    return loader


def save_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, epoch: int, scaler=None) -> None:
    """Everything a resume needs; with fp16 loss scaling, the GradScaler's scale too (a
    resume that started again from the initial scale would skip steps re-learning it)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": epoch}
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    torch.save(state, path)


def save_initial_checkpoint(path: Path, trial: TrialConfig) -> None:
    """The weights a run of `trial` starts from (`build_model`, seeded as in
    `setup_training`), as a checkpoint the evaluation stage reads: an epochs=0 trial's."""
    torch.save({"model": build_model(trial).state_dict(), "epoch": -1}, path)


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, scaler=None) -> int:
    """Restore model (for MoCo: encoders, heads, queue, queue_ptr), optimizer, schedule and
    loss scaler (when the checkpoint has one); return the epoch."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return int(state["epoch"])


def setup_training(trial: TrialConfig, device: torch.device, settings: DeviceSettings,
                   checkpoint_file: Path | None = None, scaler=None):
    """`(model, optimizer, scheduler, first epoch)`: the method's model on `device` in the
    device's layout (identical initial weights, and MoCo queue, on every rank), resumed
    from `checkpoint_file` when one is given.

    The model moves before the optimizer loads its state, which lands on its parameters'
    device: loaded first, SGD's momentum buffers would stay on the CPU while the
    parameters went to the GPU, and the first step after a resume would fail.
    """
    model = build_model(trial).to(device)
    if settings.channels_last:  # cuDNN follows the weights' layout: the inputs need no conversion
        model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler = build_optimizer(model, trial)
    start_epoch = 0
    if checkpoint_file is not None:
        start_epoch = load_checkpoint(checkpoint_file, model, optimizer, scheduler, scaler) + 1
    return model, optimizer, scheduler, start_epoch


def _outwait_train_poll() -> None:
    """Wait out Ray Train's health check, so the controller has collected this worker's last
    report and registered its checkpoint: a fault injected within one poll of a report loses
    that checkpoint, and the restarted run would start over instead of resuming."""

    time.sleep(2 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", 2.0)) + 1)


def _kill_this_worker(trial: TrialConfig, epoch: int) -> None:
    """The fault tests' worker death (inject_kill_mid_epoch), once per Train run: a marker,
    then SIGKILL, as a preempted node or an OOM kill ends a process (no exception, no cleanup).

    It first outwaits Ray Train's health check (the controller collects a worker's reports,
    and registers their checkpoints, when it polls): a death within one poll of a report
    loses that report and its checkpoint, and the run restarts from the one before.
    """
    import os
    import signal

    markers = Path(trial.data_cache or ".") / "injected-kills"
    marker = markers / f"{ray.train.get_context().get_experiment_name()}-epoch{epoch}"
    if marker.exists():
        return
    _outwait_train_poll()
    markers.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train worker function: pretraining, checkpoints, final evaluation."""
    use_driver_env(loop_config.get("env", {}))  # the sweep's object store and cache (datasets.storage)
    trial: TrialConfig = loop_config["trial"]
    method = trial.method
    context = ray.train.get_context()
    world_size, rank = context.get_world_size(), context.get_world_rank()

    device = ray.train.torch.get_device()
    torch_threads, loader_workers = cpu_split(trial.cpus_per_worker, device)
    if device.type == "cpu":
        torch.set_num_threads(torch_threads)
    settings = device_settings(device.type, device.type == "cuda" and torch.cuda.is_bf16_supported())
    torch.backends.cudnn.benchmark = settings.cudnn_benchmark
    scaler = torch.amp.GradScaler("cuda", enabled=settings.loss_scaling)

    checkpoint = ray.train.get_checkpoint()
    resumed = checkpoint is not None
    if resumed:
        with checkpoint.as_directory() as checkpoint_dir:
            model, optimizer, scheduler, start_epoch = setup_training(
                trial, device, settings, Path(checkpoint_dir) / CHECKPOINT_FILE, scaler)
        log.info("resuming %s pretraining at epoch %d", method.name, start_epoch)
    else:
        model, optimizer, scheduler, start_epoch = setup_training(trial, device, settings)

    # No per-step buffer broadcast: MoCo's queue is identical on every rank by
    # construction (keys are gathered in rank order), and only rank 0's BN statistics
    # are evaluated.
    ddp_model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"broadcast_buffers": False})
    loader = ray.train.torch.prepare_data_loader(pretrain_loader(trial, world_size, rank, loader_workers,
                                                                 pin_memory=settings.pin_memory))
    total_steps, step = trial.epochs * len(loader), start_epoch * len(loader)

    for epoch in range(start_epoch, trial.epochs):
        # Seeding per epoch makes a resumed run draw the augmentations an uninterrupted one would.
        seed_everything(trial.seed, rank, epoch)
        loader.sampler.set_epoch(epoch)
        ddp_model.train()
        # Image-weighted sums of the loss and the method's metrics, on the device.
        sums: dict[str, torch.Tensor] = {}
        skipped = torch.zeros((), dtype=torch.float64, device=device)
        images = 0
        start = time.perf_counter()
        for batch_index, (inputs, labels, n_skipped) in enumerate(loader):
            if epoch == trial.inject_kill_mid_epoch and not resumed and rank == 0 and batch_index == len(loader) // 2:
                _kill_this_worker(trial, epoch)
            out = train_step(method, ddp_model, optimizer, scaler, inputs, labels, device.type, settings)
            add_weighted(sums, {"loss": out.loss, **out.metrics}, len(n_skipped))  # before the hook changes state
            step += 1
            method.on_step_end(model, step, total_steps)
            images += len(n_skipped)
            skipped += n_skipped.sum()
        scheduler.step()
        if device.type == "cuda":  # the epoch ends when its queued kernels have run
            torch.cuda.synchronize(device)
        elapsed = distributed.all_reduce(torch.tensor([time.perf_counter() - start], device=device), "max")
        counts = torch.stack([torch.tensor(float(images), dtype=torch.float64, device=device), skipped])
        images, skipped = distributed.all_reduce(counts).tolist()
        metrics = {
            "epoch": epoch,
            **epoch_means(sums, images),
            "pretrain/images_per_second": images / float(elapsed),
            "pretrain/skipped_images": int(skipped),
        }

        last = epoch == trial.epochs - 1
        if rank == 0:
            log.info("epoch %d: %s", epoch, metrics)

        with tempfile.TemporaryDirectory() as checkpoint_dir:
            checkpoint = None
            if rank == 0 and (last or (epoch + 1) % trial.checkpoint_every == 0):
                save_checkpoint(Path(checkpoint_dir) / CHECKPOINT_FILE, model, optimizer, scheduler, epoch, scaler)
                checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir)
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"checkpoint_epoch_{epoch:04d}")

        if epoch == trial.inject_failure_at_epoch and not resumed:
            _outwait_train_poll()
            raise RuntimeError(f"injected failure after epoch {epoch} (inject_failure_at_epoch; fault-tolerance test)")
