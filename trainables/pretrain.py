"""MoCo v2 pretraining as a Ray Train loop (`ray.train.torch.TorchTrainer`, Train V2 API).

One function, `train_loop_per_worker(config)`, runs on every worker with the flat trial
config of docs/internals.md. It works with one worker and no process group (including
Ray Train local mode, `ScalingConfig(num_workers=0)`), with several CPU workers (gloo)
and with GPUs (NCCL, mixed precision).

Per epoch every worker calls `ray.train.report` with the same metrics (Ray keeps rank 0's):
`epoch`, `pretrain/loss` (mean over the global epoch), `pretrain/images_per_second`
(global). Rank 0 attaches `checkpoint.pt` every `checkpoint_every` epochs and on the last.
On the last epoch rank 0 evaluates the query backbone (trainables.evaluation) and
broadcasts the metrics, so every rank reports the RIS / probe keys and
`data/skipped_images` (images skipped by the last pretraining epoch, all workers, plus
those skipped by the evaluation).
"""
from __future__ import annotations

import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
from ray.train.collective import broadcast_from_rank_zero
from torch.utils.data import DataLoader, DistributedSampler

from datasets.image_folder import ImageFolderDataset, collate_skip_corrupt
from trainables import distributed
from trainables.augment import TwoCropsTransform, mocov2_transform
from trainables.data import objects_root, split_dir
from trainables.evaluation import evaluate
from trainables.moco import MoCo, check_queue_size, queue_overlap_warning

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


def seed_everything(*entropy: int) -> None:
    """Seed python, numpy and torch from a tuple of ints (e.g. seed, rank, epoch)."""
    seed = int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(config: dict[str, Any]) -> MoCo:
    return MoCo(
        arch=str(config["arch"]),
        dim=int(config["moco_dim"]),
        queue_size=int(config["moco_queue_size"]),
        momentum=float(config["moco_momentum"]),
        temperature=float(config["moco_temperature"]),
    )


def build_optimizer(model: MoCo, config: dict[str, Any]):
    """SGD on the query encoder, with per-epoch cosine decay to 0 (or a constant rate)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=float(config["lr"]), momentum=float(config["momentum"]),
                                weight_decay=float(config["weight_decay"]))
    if bool(config["cosine_schedule"]):
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(config["epochs"]))
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


def pretrain_loader(config: dict[str, Any], world_size: int, rank: int, loader_workers: int) -> DataLoader:
    """Two-crop DataLoader over `<pretrain_data>/train`, this worker's shard of the data.

    The DistributedSampler is built here (not by `prepare_data_loader`) so that its
    shuffle is seeded from `config["seed"]`; `prepare_data_loader` then only moves the
    batches to the device.
    """
    root = split_dir(objects_root(str(config["pretrain_data"]), config), "train")
    transform = TwoCropsTransform(mocov2_transform(
        int(config["image_size"]), (float(config["crop_scale_min"]), float(config["crop_scale_max"]))))
    dataset = ImageFolderDataset(root, transform=transform)
    batch_size = int(config["batch_size"]) // world_size
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=int(config["seed"]), drop_last=True)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                        num_workers=loader_workers,
                        collate_fn=collate_skip_corrupt)
    if len(loader) == 0:
        raise ValueError(f"{root}: {len(dataset)} images are fewer than one global batch of "
                         f"{config['batch_size']}; lower batch_size or add images")
    warning = queue_overlap_warning(int(config["moco_queue_size"]), len(dataset), str(root))
    if warning and rank == 0:
        log.warning(warning)
    return loader


def save_checkpoint(path: Path, model: MoCo, optimizer, scheduler, epoch: int) -> None:
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch}, path)


def load_checkpoint(path: Path, model: MoCo, optimizer, scheduler) -> int:
    """Restore model (encoders, heads, queue, queue_ptr), optimizer and schedule; return the epoch."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return int(state["epoch"])


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker function: MoCo v2 pretraining, checkpoints, final evaluation."""
    context = ray.train.get_context()
    world_size, rank = context.get_world_size(), context.get_world_rank()
    epochs, global_batch = int(config["epochs"]), int(config["batch_size"])
    if global_batch % world_size:
        raise ValueError(f"batch_size ({global_batch}) must split evenly over num_workers ({world_size})")
    check_queue_size(int(config["moco_queue_size"]), global_batch)

    device = ray.train.torch.get_device()
    torch_threads, loader_workers = cpu_split(int(config["cpus_per_worker"]), device)
    if device.type == "cpu":
        torch.set_num_threads(torch_threads)
    use_amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    # fp16 needs loss scaling against gradient underflow; bf16 has fp32's range and does not.
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    seed = int(config["seed"])
    seed_everything(seed)  # identical initial weights and queue on every rank
    model = build_model(config)
    optimizer, scheduler = build_optimizer(model, config)

    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    resumed = checkpoint is not None
    if resumed:
        with checkpoint.as_directory() as checkpoint_dir:
            start_epoch = load_checkpoint(Path(checkpoint_dir) / CHECKPOINT_FILE, model, optimizer, scheduler) + 1
        log.info("resuming MoCo pretraining at epoch %d", start_epoch)

    # The queue is identical on every rank by construction (keys are gathered in rank
    # order), and only rank 0's BN statistics are evaluated: no per-step buffer broadcast.
    ddp_model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"broadcast_buffers": False})
    loader = ray.train.torch.prepare_data_loader(pretrain_loader(config, world_size, rank, loader_workers))

    for epoch in range(start_epoch, epochs):
        # Seeding per epoch makes a resumed run draw the augmentations an uninterrupted one would.
        seed_everything(seed, rank, epoch)
        loader.sampler.set_epoch(epoch)
        ddp_model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        images = skipped = 0
        start = time.perf_counter()
        for views, _, n_skipped in loader:
            skipped += int(n_skipped)
            # Every rank must take the same steps (the forward gathers keys), and train-mode
            # BN needs two images: all ranks skip a step where one has fewer readable ones.
            if distributed.min_over_ranks(len(views[0]) if isinstance(views, tuple) else 0, device) < 2:
                continue
            im_q, im_k = views
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                output = ddp_model(im_q, im_k)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(output.loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += output.loss.detach() * len(im_q)
            images += len(im_q)
        scheduler.step()
        elapsed = distributed.all_reduce(torch.tensor([time.perf_counter() - start], device=device), "max")
        counts = torch.tensor([images, skipped], dtype=torch.float64, device=device)
        loss_sum, (images, skipped) = distributed.all_reduce(loss_sum), distributed.all_reduce(counts).tolist()
        metrics = {
            "epoch": epoch,
            "pretrain/loss": float(loss_sum) / max(images, 1),
            "pretrain/images_per_second": images / float(elapsed),
        }

        last = epoch == epochs - 1
        if last:
            eval_metrics = evaluate(model.backbone, config, device) if rank == 0 else None
            eval_metrics = broadcast_from_rank_zero(eval_metrics)
            metrics.update(eval_metrics)
            metrics["data/skipped_images"] = int(skipped) + int(eval_metrics["data/skipped_images"])
        if rank == 0:
            log.info("epoch %d: %s", epoch, metrics)

        with tempfile.TemporaryDirectory() as checkpoint_dir:
            checkpoint = None
            if rank == 0 and (last or (epoch + 1) % int(config["checkpoint_every"]) == 0):
                save_checkpoint(Path(checkpoint_dir) / CHECKPOINT_FILE, model, optimizer, scheduler, epoch)
                checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir)
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"checkpoint_epoch_{epoch:04d}")

        if epoch == int(config["inject_failure_at_epoch"]) and not resumed:
            raise RuntimeError(f"injected failure after epoch {epoch} (inject_failure_at_epoch; fault-tolerance test)")
