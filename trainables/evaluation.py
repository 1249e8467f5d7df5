"""A trial's evaluation of a frozen backbone: Top-K RIS on every invariance set it names
and every probe it names, from one feature-extraction path.

In a sweep it is a stage of its own: a Ray task (`run_evaluation`) that the trial function
submits after the Train run, on the last checkpoint, with the CPUs and memory the trial
states (`plan_evaluation`), so the trial's 0-CPU driver on the head only waits on it. A
small set on one node without GPUs is extracted in the task's own process by a torch
DataLoader; a large one on a multi-node cluster, or a GPU trial's, by the cached Ray Data
path (`trainables.features.RayDataFeatures`). `evaluate` also runs in process on any
backbone (baselines, tests).

Produces the metrics named in ../shared/DESIGN.md: ``ris/<invariance>/top10`` and
``ris/<invariance>/top25`` for each of the trial's ``invariances`` with
``data/ris_targets/<invariance>`` (the targets it was scored over: RIS is comparable only
at equal counts, since each target's share P(y) sets its firing threshold), each probe's
``probe/*`` keys, and ``data/skipped_images`` (images that failed to decode here). It
knows no invariance set or probe by name.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from datasets.cache import using_data_cache
from trainables.augment import eval_transform
from trainables.config import TrialConfig
from trainables.features import FeatureExtractor
from trainables.invariance import representation_invariance_score
from trainables.models import scored_layer

RIS_TOP_K = (10, 25)

# The evaluation task's memory request, unless the trial sets `eval_memory_gb`: its
# features held twice (the extraction's array and the probe's standardised copy), float32,
# plus a floor for the process itself (Python, torch, the model, one batch's activations).
FEATURE_COPIES = 2
EVALUATION_MEMORY_FLOOR = 2 * 1024**3
# Up to this many images, a CPU trial's evaluation on a multi-node cluster extracts its
# features in its own process: a Ray Data actor pool starts in about 10-15 s on 2 cores
# (BENCHMARKS.md, "Frozen-feature extraction"), more than a few thousand small images take.
# On one node a CPU trial always does: a pool there has no CPUs beyond the task's own
# threads, and its actors would wait on the CPUs that concurrent evaluation tasks hold.
IN_PROCESS_MAX_IMAGES = 20_000


def evaluate(backbone: nn.Module | None, trial: TrialConfig, device: torch.device | str,
             features=None) -> dict[str, float]:
    """All evaluation metrics of `backbone` (image -> pooled features), frozen, scored at
    `trial.eval_layer` (the pooled output by default, as the paper).

    `features` replaces the in-process extraction (`FeatureExtractor` of `backbone`),
    e.g. by the cached Ray Data path (`RayDataFeatures`) of the score command.
    """
    if features is None:
        features = FeatureExtractor(scored_layer(backbone, trial.eval_layer), device, trial.eval_batch_size,
                                    eval_transform(trial.image_size), trunk=backbone, image_size=trial.image_size,
                                    layer=trial.eval_layer)
    metrics: dict[str, float] = {}
    sets = [(invariance, read_evaluation_data(invariance, trial)) for invariance in trial.invariances]
    if hasattr(features, "prefetch"):  # one extraction run for the sets and the probes' own images
        with using_data_cache(trial.data_cache):
            announced = [paths for probe in trial.probes for paths in probe.image_paths(trial.root_of(probe), trial)]
        features.prefetch([data.paths for _, data in sets] + announced)
    for invariance, data in sets:
        x, index = features(data.paths)
        # `index` holds the positions of the images that decoded: keep their annotations.
        scores = representation_invariance_score(x, data.targets[index], data.trajectories[index],
                                                 top_k=RIS_TOP_K, sign=trial.ris_sign,
                                                 local_rate=trial.ris_local_rate, weighting=trial.ris_weighting)
        for k in RIS_TOP_K:
            metrics[f"ris/{invariance.name}/top{k}"] = scores[k]
        metrics[f"data/ris_targets/{invariance.name}"] = len(np.unique(data.targets[index]))
    for probe in trial.probes:
        with using_data_cache(trial.data_cache):  # a probe's own crops (voc07_boxes) too
            metrics.update(probe.evaluate(trial.root_of(probe), features, trial))
    metrics["data/skipped_images"] = features.skipped
    return metrics


def read_evaluation_data(part, trial: TrialConfig):
    """What the evaluation reads for one of the trial's invariance sets or probes, parsed
    and checked: the set's trajectories (`InvarianceSetPart.trajectories`), or the probe's
    annotations (`Probe.read`). A malformed file raises `DatasetFormatError` naming it.
    `evaluate` starts from it, and the sweep's prepare stage calls it before any trial
    (`orchestrator.sweep.prepare_data`), so a bad annotation is refused before training."""
    from datasets.invariance_sets import InvarianceSetPart

    with using_data_cache(trial.data_cache):  # crops of a real root go to the trial's cache
        if isinstance(part, InvarianceSetPart):
            return part.trajectories(trial.root_of(part), trial.ris_max_objects)
        return part.read(trial.root_of(part), trial)


@dataclass(frozen=True)
class TrainedBackbone:
    """A trained method's backbone as the feature actors build it (`RayDataFeatures`)."""

    module: nn.Module
    arch: str
    digest: str  # of the checkpoint file: the features' cache key

    def build(self) -> nn.Module:
        return self.module.eval()


def load_backbone(trial: TrialConfig, checkpoint_file: Path | str) -> nn.Module:
    """The backbone of `trial`'s method with a checkpoint's weights, in eval mode, on the CPU
    (the method rebuilds its model and hands over its `backbone`)."""
    model = trial.method.build_model(trial)
    state = torch.load(checkpoint_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return trial.method.backbone(model).eval()


def load_trained_backbone(trial: TrialConfig, checkpoint_file: Path | str) -> TrainedBackbone:
    """`load_backbone`, with the checkpoint's digest as its features' cache key."""
    digest = hashlib.sha256(Path(checkpoint_file).read_bytes()).hexdigest()[:16]
    return TrainedBackbone(load_backbone(trial, checkpoint_file), trial.arch, digest)


def evaluate_checkpoint(trial: TrialConfig, checkpoint_file: Path | str, in_process: bool = False) -> dict[str, float]:
    """The evaluation stage: every metric of the checkpoint's backbone, features extracted
    in this process (`in_process`, on the CPU) or by Ray Data."""
    from trainables.features import RayDataFeatures

    backbone = load_trained_backbone(trial, checkpoint_file)
    features = RayDataFeatures(backbone, trial.image_size, trial.eval_batch_size, cache=trial.data_cache,
                               use_gpu=trial.use_gpu and not in_process, layer=trial.eval_layer,
                               in_process=in_process)
    return evaluate(None, trial, "cuda" if trial.use_gpu and not in_process else "cpu", features=features)


# -- the evaluation as Ray work ------------------------------------------------------------
def evaluation_images(trial: TrialConfig) -> int:
    """Image files under the roots of every invariance set and probe the trial scores (each
    root once): what the evaluation may extract features of. A listing, no decoding."""
    from datasets.image_folder import is_image_file

    roots = {Path(trial.root_of(part)) for part in (*trial.invariances, *trial.probes)}
    return sum(1 for root in roots for path in root.rglob("*") if is_image_file(path))


def feature_width(trial: TrialConfig) -> int:
    """The width of the trial's scored layer (one forward pass of an untrained trunk)."""
    from trainables.models import resnet_backbone

    trunk, _ = resnet_backbone(trial.arch)
    with torch.inference_mode():
        return int(scored_layer(trunk.eval(), trial.eval_layer)(torch.zeros(1, 3, trial.image_size,
                                                                            trial.image_size)).shape[1])


def estimated_evaluation_memory(images: int, width: int) -> int:
    """Bytes an evaluation of `images` features of `width` floats holds at its peak."""
    return images * width * 4 * FEATURE_COPIES + EVALUATION_MEMORY_FLOOR


def extracts_in_process(use_gpu: bool, multi_node: bool, images: int) -> bool:
    """Whether the evaluation extracts features in its own process (a torch DataLoader)
    rather than by a Ray Data actor pool: a CPU trial, on one node or on few images
    (`IN_PROCESS_MAX_IMAGES`). A GPU trial's features come from GPU actors."""
    return not use_gpu and (not multi_node or images <= IN_PROCESS_MAX_IMAGES)


@dataclass(frozen=True)
class EvaluationPlan:
    """How a trial's evaluation runs as a Ray task: where features are extracted and what
    the task asks Ray for."""

    in_process: bool
    num_cpus: int
    memory: int  # bytes (Ray's `memory` resource)
    resources: dict[str, float] = field(default_factory=dict)  # the CPU-node marker, where a cluster has one

    def remote_options(self) -> dict[str, Any]:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        # Outside the caller's placement group: a Tune trial's driver holds a 0-CPU bundle
        # and captures its child tasks, so the task could never fit in it.
        return {"num_cpus": self.num_cpus, "num_gpus": 0, "memory": self.memory,
                "resources": dict(self.resources),
                "scheduling_strategy": PlacementGroupSchedulingStrategy(placement_group=None)}

    def requested(self) -> dict[str, float]:
        """The resources Ray assigns the task, as `get_assigned_resources()` spells them."""
        return {"CPU": float(self.num_cpus), "memory": float(self.memory), **self.resources}


def multi_node_cluster() -> bool:
    """Whether the evaluation may run on another node than the data's: a cluster the job
    was submitted to (it may add nodes) or a Ray instance of several nodes now."""
    import ray

    from datasets.placement import submitted_to_cluster

    return submitted_to_cluster() or sum(1 for node in ray.nodes() if node.get("Alive")) > 1


def plan_evaluation(trial: TrialConfig, multi_node: bool | None = None) -> EvaluationPlan:
    """The evaluation task of `trial`: in its own process with the trial's CPUs per worker
    (its torch threads) when `extracts_in_process`, else 1 CPU that waits on the feature
    actors (which ask for their own CPUs or GPUs) and fits the probes. Memory: the trial's
    `eval_memory_gb`, or `estimated_evaluation_memory` of its images and feature width.
    A GPU trial's task asks for no GPU: its GPU actors extract, and a GPU held while the
    probes fit on the CPU would sit idle."""
    from datasets.placement import cpu_only_resources

    if multi_node is None:
        multi_node = multi_node_cluster()
    images = evaluation_images(trial)
    if trial.eval_memory_gb > 0:
        memory = int(trial.eval_memory_gb * 1024**3)
    else:
        memory = estimated_evaluation_memory(images, feature_width(trial))
    if not multi_node:  # no node will be added: a request beyond this one's would wait forever
        memory = fitted_to_this_node(memory, explicit=trial.eval_memory_gb > 0)
    in_process = extracts_in_process(trial.use_gpu, multi_node, images)
    return EvaluationPlan(in_process, trial.cpus_per_worker if in_process else 1, memory, cpu_only_resources())


def fitted_to_this_node(memory: int, explicit: bool, node_memory: float | None = None) -> int:
    """`memory`, at most the single-node Ray's `memory` resource (`node_memory`, default the
    connected Ray's): an estimate above it is lowered (with a warning), a trial's own
    `eval_memory_gb` above it refused."""
    import logging

    from datasets.registry import ConfigError

    if node_memory is None:
        import ray

        node_memory = ray.cluster_resources().get("memory", float("inf"))
    if memory <= node_memory:
        return memory
    if explicit:
        raise ConfigError(f"eval_memory_gb={memory / 1024**3:g} is more than this Ray's memory resource "
                          f"({node_memory / 1024**3:.1f} GiB): the evaluation task could never start")
    logging.getLogger(__name__).warning(
        "the evaluation's features may need %.1f GiB, more than this Ray's %.1f GiB: asking for that",
        memory / 1024**3, node_memory / 1024**3)
    return int(node_memory)


@dataclass(frozen=True)
class EvaluationRun:
    """A finished evaluation task: its metrics, and where and with what it ran."""

    metrics: dict[str, float]
    pid: int
    assigned_resources: dict[str, float]


def _evaluation_task(trial: TrialConfig, checkpoint, in_process: bool) -> EvaluationRun:
    """The evaluation task's body: `checkpoint` (a `ray.train.Checkpoint` holding
    `CHECKPOINT_FILE`) evaluated, or with None the seed's initial weights (an epochs=0 trial)."""
    import ray

    from trainables.pretrain import CHECKPOINT_FILE, save_initial_checkpoint

    assigned = ray.get_runtime_context().get_assigned_resources()
    torch.set_num_threads(max(1, int(assigned.get("CPU", 1))))
    if checkpoint is None:
        with tempfile.TemporaryDirectory() as folder:
            save_initial_checkpoint(Path(folder) / CHECKPOINT_FILE, trial)
            metrics = evaluate_checkpoint(trial, Path(folder) / CHECKPOINT_FILE, in_process)
    else:
        with checkpoint.as_directory() as folder:
            metrics = evaluate_checkpoint(trial, Path(folder) / CHECKPOINT_FILE, in_process)
    return EvaluationRun(metrics, os.getpid(), dict(assigned))


def run_evaluation(trial: TrialConfig, checkpoint=None, plan: EvaluationPlan | None = None) -> EvaluationRun:
    """The evaluation stage as a Ray task with the plan's resources (`plan_evaluation`),
    scheduled by Ray; the caller (a trial's 0-CPU driver) only waits. An error inside is
    raised here as itself (a `DatasetFormatError` naming its file, as an evaluation in the
    caller's process raised it), the task's traceback chained to it."""
    import ray

    from datasets.storage import driver_env

    plan = plan or plan_evaluation(trial)
    options = plan.remote_options()
    if env := driver_env():  # the sweep's object store and cache, as its Train workers get them
        options["runtime_env"] = {"env_vars": env}
    task = ray.remote(_evaluation_task).options(**options, name=f"evaluation-{trial.arch}")
    try:
        return ray.get(task.remote(trial, checkpoint, plan.in_process))
    except ray.exceptions.RayTaskError as error:
        cause = error.cause
        if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
            raise cause from error
        raise
