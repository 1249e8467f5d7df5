"""Keeping CPU-only Ray work off GPU nodes on a cluster.

The cluster configs (orchestrator/clusters/) give the head and every node of the CPU
worker group a custom resource, :data:`CPU_NODE_RESOURCE`, and GPU nodes none. CPU-only
Ray Data stages (decoding, selective search, CPU feature extraction) and Tune's trial
drivers ask for one unit of it, so they are placed on CPU nodes and never hold a spot
GPU node (or keep one from scaling down). On a cluster without the resource (a laptop,
a plain `ray start --head`) nothing is asked for and Ray places the work as usual.
"""
from __future__ import annotations

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
