"""Ray Data actor pools that scale: sized from the config and constants, never from the
cluster's resources at call time (a cluster scaled to 0 is its head alone), GPU actors for
GPU trials, and Ray 2.60's current API (no deprecated `concurrency=`)."""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from datasets.placement import (
    CPU_NODE_RESOURCE,
    MAX_CPU_POOL_ACTORS,
    MAX_GPU_POOL_ACTORS,
    MIN_POOL_ACTORS,
    ActorPool,
    actor_pool,
)


@dataclass
class Weights:  # what RayDataFeatures needs of a backbone's weights
    arch: str = "resnet18"
    digest: str = "abc"

    def build(self):
        from trainables.models import resnet_backbone

        return resnet_backbone(self.arch)[0].eval()


@pytest.fixture
def scaled_to_zero(monkeypatch):
    """A cluster scaled to 0: its head alone, with no CPU for work and the CPU-node marker."""
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 0.0, CPU_NODE_RESOURCE: 1000.0})


@pytest.fixture
def unreadable_cluster(monkeypatch):
    """A submitted job (RAY_ADDRESS) whose cluster's resources must not be read at all."""
    import ray

    def refuse():
        raise AssertionError("a pool was sized from ray.cluster_resources()")

    monkeypatch.setattr(ray, "cluster_resources", refuse)
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")


def strategy(pool: ActorPool) -> tuple[int, int]:
    compute = pool.map_batches_args()["compute"]
    return compute.min_size, compute.max_size


def test_cpu_pools_scale_from_one_to_the_configured_maximum_on_a_cluster_scaled_to_zero(scaled_to_zero):
    from datasets.sources.video import SyntheticVideo
    from datasets.video.regions import region_feature_pool
    from trainables.features import RayDataFeatures

    config = SyntheticVideo().pipeline_config(SimpleNamespace(data_cache=""))  # what a sweep's trial gets
    proposals = actor_pool(config.proposal_actors)
    regions = region_feature_pool(use_gpu=False)
    features = RayDataFeatures(Weights(), 32, 8).pool()
    for pool in (proposals, regions, features):
        # The old sizes were the head's CPUs (here 0, so one fixed actor): nothing to scale onto.
        assert strategy(pool) == (MIN_POOL_ACTORS, MAX_CPU_POOL_ACTORS) and MAX_CPU_POOL_ACTORS > 1
        args = pool.map_batches_args()
        assert (args["num_cpus"], args["num_gpus"], args["resources"]) == (1, 0, {CPU_NODE_RESOURCE: 1.0})
    # The config's maximum wins over the default.
    assert strategy(actor_pool(config.replace(proposal_actors=3).proposal_actors)) == (MIN_POOL_ACTORS, 3)
    assert strategy(RayDataFeatures(Weights(), 32, 8, max_actors=2).pool()) == (MIN_POOL_ACTORS, 2)


def test_gpu_trials_ask_for_gpu_actors_without_reading_the_cluster(unreadable_cluster):
    from datasets.video.regions import region_feature_pool
    from trainables.features import RayDataFeatures

    for pool in (region_feature_pool(use_gpu=True), RayDataFeatures(Weights(), 32, 8, use_gpu=True).pool()):
        args = pool.map_batches_args()
        # One GPU per actor, pending until the autoscaler adds a GPU node: that is the demand it sees.
        assert pool.gpu and (args["num_gpus"], args["num_cpus"]) == (1, 1) and "resources" not in args
        assert strategy(pool) == (MIN_POOL_ACTORS, MAX_GPU_POOL_ACTORS)


def test_a_local_ray_without_gpus_runs_gpu_trials_features_on_cpus(monkeypatch, scaled_to_zero):
    from trainables.features import RayDataFeatures

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    pool = RayDataFeatures(Weights(), 32, 8, use_gpu=True).pool()
    assert not pool.gpu and strategy(pool) == (MIN_POOL_ACTORS, MAX_CPU_POOL_ACTORS)


def test_a_negative_maximum_is_refused():
    with pytest.raises(ValueError, match="max_actors must be >= 0"):
        actor_pool(-1)


class Double:
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"x": batch["x"] * 2}


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.slow
@pytest.mark.parametrize("legacy", [False, True], ids=["actor_pool", "concurrency"])
def test_a_pool_runs_on_ray_data_without_deprecation(ray_session, legacy):
    """Ray 2.60 warns of `concurrency=` in a log line (the `ray` logger does not propagate,
    so a handler of its own reads it) and of `**ray_remote_args` with a warning: neither
    appears with `actor_pool`; the old `concurrency=(1, n)` shows the check sees the first."""
    import ray

    records, logger = Records(), logging.getLogger("ray.data")
    logger.addHandler(records)
    args = {"concurrency": (1, 2)} if legacy else actor_pool(2).map_batches_args()
    ray.data.DataContext.get_current()  # made before the check: Ray 2.60's own defaults warn of themselves
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            dataset = ray.data.from_items([{"x": i} for i in range(8)]).map_batches(
                Double, batch_size=4, batch_format="numpy", **args)
            assert sorted(row["x"] for row in dataset.take_all()) == [2 * i for i in range(8)]
    finally:
        logger.removeHandler(records)
    assert bool([m for m in records.messages if "deprecated" in m]) == legacy
