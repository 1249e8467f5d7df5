"""Keeping CPU-only Ray work off GPU nodes on a cluster.

The cluster configs (orchestrator/clusters/) give the head and every node of the CPU
worker group a custom resource, :data:`CPU_NODE_RESOURCE`, and GPU nodes none. CPU-only
Ray Data stages (decoding, selective search, CPU feature extraction) and Tune's trial
drivers ask for one unit of it, so they are placed on CPU nodes and never hold a spot
GPU node (or keep one from scaling down). On a cluster without the resource (a laptop,
a plain `ray start --head`) nothing is asked for and Ray places the work as usual.

Ray Data actor pools (:func:`actor_pool`) are sized from the config and the constants
here, never from the cluster's resources at call time: on a cluster scaled to 0 those are
the head's alone, and a pool sized from them would never grow onto the nodes the
autoscaler could add.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

CPU_NODE_RESOURCE = "cpu_node"
# What one CPU node advertises: one unit per CPU-only task or trial driver, more than a
# node ever runs at once, so the resource marks a node without ever limiting it.
CPU_NODE_CAPACITY = 1000


def cpu_only_resources(cluster_resources: dict[str, float] | None = None) -> dict[str, float]:
    """`{CPU_NODE_RESOURCE: 1}` when the cluster marks its CPU nodes, else `{}`.

    `cluster_resources` defaults to the connected cluster's (`ray.cluster_resources()`);
    with no Ray connection nothing is asked for.
    """
    if cluster_resources is None:
        import ray

        if not ray.is_initialized():
            return {}
        cluster_resources = ray.cluster_resources()
    return {CPU_NODE_RESOURCE: 1.0} if cluster_resources.get(CPU_NODE_RESOURCE, 0) > 0 else {}


def cpu_stage_args(cluster_resources: dict[str, float] | None = None) -> dict:
    """Extra Ray remote args of a CPU-only stage (`map_batches(..., **cpu_stage_args())`)."""
    resources = cpu_only_resources(cluster_resources)
    return {"resources": resources} if resources else {}


# An actor pool starts with one actor, so that even on a cluster scaled to 0 its first actor
# is demand the autoscaler sees, and Ray Data grows it toward its maximum as its backlog and
# the cluster's resources allow (`ActorPoolStrategy(min_size=, max_size=)`, Ray 2.60;
# `map_batches(concurrency=...)` is deprecated since 2.51). The default maxima are what the
# launcher configs' worker groups hold (orchestrator/clusters/): 8 CPU nodes of 16 CPUs,
# 4 GPU nodes of 4 GPUs; a stage's config may set a lower one.
MIN_POOL_ACTORS = 1
MAX_CPU_POOL_ACTORS = 128
MAX_GPU_POOL_ACTORS = 16


@dataclass(frozen=True)
class ActorPool:
    """A Ray Data actor pool: how far it may scale and what each actor asks for."""

    max_size: int
    gpu: bool = False  # one GPU per actor
    resources: dict[str, float] = field(default_factory=dict)  # custom resources (the CPU-node marker)
    min_size: int = MIN_POOL_ACTORS

    def map_batches_args(self) -> dict:
        """`compute`, `num_cpus`, `num_gpus` (and `resources`) of `Dataset.map_batches`.

        A GPU actor keeps one CPU too: it decodes its images before the forward pass."""
        import ray

        args = {"compute": ray.data.ActorPoolStrategy(min_size=self.min_size, max_size=self.max_size),
                "num_cpus": 1, "num_gpus": 1 if self.gpu else 0}
        return args | ({"resources": dict(self.resources)} if self.resources else {})


def actor_pool(max_actors: int = 0, gpu: bool = False) -> ActorPool:
    """The pool of a Ray Data stage: up to `max_actors` actors (0: the default maximum of its
    kind), one GPU each with `gpu`; CPU actors stay on CPU nodes where the cluster marks them."""
    if max_actors < 0:
        raise ValueError(f"max_actors must be >= 0 (0: the default), got {max_actors}")
    limit = max_actors or (MAX_GPU_POOL_ACTORS if gpu else MAX_CPU_POOL_ACTORS)
    return ActorPool(max_size=limit, gpu=gpu, resources={} if gpu else cpu_only_resources())


def submitted_to_cluster() -> bool:
    """Whether this driver runs on a Ray cluster (`ray job submit`, or RAY_ADDRESS pointing
    at a head), which may add nodes on demand, rather than on a local Ray of its own."""
    return bool(os.environ.get("RAY_ADDRESS"))


def gpu_actors(use_gpu: bool, autoscaling: bool, cluster_resources: dict[str, float] | None = None) -> bool:
    """Whether a stage that can use GPUs asks for one per actor: when the trial uses GPUs, on
    a cluster that may add GPU nodes (the pending actors are the demand that adds them:
    what it has now does not matter), or where Ray has GPUs. A local Ray without GPUs would
    leave GPU actors pending forever: there they run on CPUs. `cluster_resources` defaults
    to the connected Ray's, read only in that last case."""
    if not use_gpu:
        return False
    if autoscaling:
        return True
    if cluster_resources is None:
        import ray

        cluster_resources = ray.cluster_resources()
    return cluster_resources.get("GPU", 0) > 0
