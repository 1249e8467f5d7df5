"""The cluster a sweep runs on: its nodes, storage, caches and placement (Ray itself is
started by `datasets.ray_connection.init_ray`)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import ray

log = logging.getLogger(__name__)


# -- multi-node correctness -------------------------------------------------------------
# Restarts of a trial's Train run (and of the trial itself) when none is asked for: on a
# cluster a preempted spot node or a lost worker should cost an epoch, not the trial.
CLUSTER_MAX_FAILURES = 3
# Filesystem types that every node of a cluster can mount at the same path.
SHARED_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "fuse.ceph", "cephfs",
    "beegfs", "glusterfs", "fuse.glusterfs", "fuse.gcsfuse", "fuse.s3fs", "fuse.mountpoint-s3",
    "fuse.juicefs", "fuse.goofys", "fuse.rclone", "efs", "wekafs", "virtiofs",
})
STORAGE_FIX = ("use storage every node reaches: --storage-path s3://<bucket>/ray_results, "
               "gs://<bucket>/ray_results, or a folder on NFS mounted at the same path on "
               "every node (e.g. an EFS / Filestore share at /mnt/shared/ray_results)")


@dataclass(frozen=True)
class ClusterView:
    """What the placement rules need to know about the connected cluster."""

    nodes: int = 1  # alive nodes now
    may_grow: bool = False  # an autoscaler may add worker nodes
    resources: dict = field(default_factory=dict)  # the cluster's total resources

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1 or self.may_grow


# Set on a cluster's head (orchestrator/clusters/ do): nodes may join later. Ray's v1
# autoscaler (the cluster launcher's) publishes no worker groups a driver could read, so
# a cluster scaled to 0 workers would otherwise look like one node.
MULTI_NODE_ENV_VAR = "DSSL_MULTI_NODE"


def cluster_view() -> ClusterView:
    """The connected cluster's node count, whether it autoscales, and its resources."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    declared = os.environ.get(MULTI_NODE_ENV_VAR, "").strip().lower() in ("1", "true", "yes")
    return ClusterView(nodes=len(nodes), may_grow=declared or _autoscaler_may_add_nodes(),
                       resources=dict(ray.cluster_resources()))


def _autoscaler_may_add_nodes() -> bool:
    """True when the autoscaler has published worker groups that can have nodes."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - an older GCS or no autoscaler: judge by nodes alone
        return False
    if config is None:
        return False
    return any(group.max_count != 0 for group in config.node_group_configs
               if not group.name.startswith("head"))


def filesystem_type(path: str, mounts: str | None = None) -> str:
    """The type of the filesystem holding `path` (the longest mount point above it)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return "unknown"
    target = os.path.realpath(os.path.expanduser(path))
    best, kind = "", "unknown"
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def storage_problem(storage: str, view: ClusterView, fs_type: str | None = None) -> str | None:
    """Why `storage` cannot hold a sweep's checkpoints on this cluster, or None.

    On several nodes (or an autoscaling cluster) a Train rank on another node writes its
    checkpoint into `storage`: a folder on one node's own disk fails there, after a full
    epoch of GPU time. Object stores and shared filesystems are fine.
    """
    if not view.multi_node:
        return None
    if "://" in storage and not storage.startswith("file://"):
        return None  # s3://, gs://, abfs://, hdfs://...: pyarrow reaches them from every node
    path = storage.removeprefix("file://")
    kind = fs_type if fs_type is not None else filesystem_type(path)
    if kind in SHARED_FILESYSTEMS:
        return None
    nodes = f"{view.nodes} nodes" + (" and an autoscaler adding more" if view.may_grow else "")
    return (f"--storage-path {storage} is on this node's own disk ({kind} filesystem), but the "
            f"cluster has {nodes}: checkpoints of trials on other nodes would fail after their "
            f"first epoch; {STORAGE_FIX}")


def default_max_failures(requested: int | None, cluster: bool) -> int:
    """`--max-failures` as given, else CLUSTER_MAX_FAILURES on a cluster and 0 on a laptop."""
    if requested is not None:
        return requested
    return CLUSTER_MAX_FAILURES if cluster else 0


def trial_driver_resources(base: dict, view: ClusterView) -> dict:
    """A trial driver's Tune resources: `base`, plus a CPU node's marker where the cluster
    has one, so that drivers run on the head or CPU nodes and never on a (spot) GPU node."""
    from datasets.placement import cpu_only_resources

    return {**base, **cpu_only_resources(view.resources)}


def placement_warnings(view: ClusterView) -> list[str]:
    from datasets.placement import CPU_NODE_RESOURCE

    if view.multi_node and view.resources.get("GPU", 0) > 0 and not view.resources.get(CPU_NODE_RESOURCE):
        return [f"no node of this cluster has the custom resource {CPU_NODE_RESOURCE!r}: trial drivers "
                f"and Ray Data CPU stages may land on GPU nodes; give the head and CPU nodes "
                f"--resources='{{\"{CPU_NODE_RESOURCE}\": 1000}}' (orchestrator/clusters/)"]
    return []


def shared_data_cache(storage: str, data_cache: str, view: ClusterView) -> str:
    """Where a multi-node sweep's generated data lives: once per cluster, on shared storage.

    The user's `data_cache` (or $DSSL_CACHE_DIR) wins. Otherwise, on several nodes, the
    cache moves next to the checkpoints: `<storage>/data-cache` (a shared folder, or an
    object store that each node mirrors locally, datasets.cache), so the driver generates
    each synthetic set once before any trial and GPU workers only read it.
    """
    from datasets.cache import CACHE_ENV_VAR

    if data_cache or os.environ.get(CACHE_ENV_VAR) or not view.multi_node:
        return data_cache
    return f"{storage.rstrip('/')}/data-cache"


def video_cache_problem(trials: list, data_cache: str, view: ClusterView, fs_type: str | None = None) -> str | None:
    """Why the video methods' pipeline stages cannot live in `data_cache` on this cluster, or None.

    Those stages (frames, proposals, region features, tracks; datasets.video.stages) are
    Parquet folders that Ray Data tasks write on any node and that actors and Train
    workers on any node read by path. On several nodes that needs one folder every node
    mounts at the same path. An object store is mirrored per node for the synthetic sets
    (datasets.cache), not for these stages: tasks on other nodes would write their files
    where the driver never reads them.
    """
    from datasets.cache import CACHE_ENV_VAR, DEFAULT_CACHE_DIR

    videos = sorted({t.method.name for t in trials if "video" in t.data})
    if not view.multi_node or not videos:
        return None
    cache = data_cache or os.environ.get(CACHE_ENV_VAR, "") or str(DEFAULT_CACHE_DIR)
    if "://" in cache and not cache.startswith("file://"):
        where = "an object store, which each node only mirrors"
    else:
        kind = fs_type if fs_type is not None else filesystem_type(cache.removeprefix("file://"))
        if kind in SHARED_FILESYSTEMS:
            return None
        where = f"this node's own disk ({kind} filesystem)"
    return (f"method {', '.join(videos)}: the video pipeline's stages go to the data cache {cache}, on {where}, "
            f"but the cluster has several nodes and Ray Data writes those stages from all of them; put the "
            f"cache on a filesystem every node mounts at the same path: --set data_cache=/mnt/shared/dssl-cache "
            f"(or {CACHE_ENV_VAR} on every node, e.g. an EFS / Filestore share)")


def check_on_every_node(trials: list, view_nodes: list[dict] | None = None) -> list[str]:
    """Run the trials' config checks (real dataset roots included) on every alive node.

    A root mounted on the head only would otherwise be found missing by the first Train
    worker on another node. Nodes the autoscaler adds later are checked by their workers
    when they open the root. Returns one sentence per problem, naming the node.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    nodes = view_nodes if view_nodes is not None else [n for n in ray.nodes() if n.get("Alive")]
    pending = {}
    for node in nodes:
        if node["NodeID"] == here:
            continue
        task = _node_problems.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
        pending[node.get("NodeManagerAddress", node["NodeID"])] = task.remote(trials)
    problems = []
    for address, ref in pending.items():
        problems += [f"on node {address}: {p}" for p in ray.get(ref)]
    return list(dict.fromkeys(problems))


@ray.remote(num_cpus=0)
def _node_problems(trials: list) -> list[str]:
    return [problem for trial in trials for problem in trial.problems()]
