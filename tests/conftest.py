"""Shared fixtures: one local Ray instance per test session, small synthetic data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole session (starting Ray costs seconds).

    Tests that need Ray take this fixture; Ray is shut down at the end of the session.
    """
    import ray

    from orchestrator.cluster import init_ray

    init_ray(num_cpus=2, quiet=True)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """A cache folder for generated data shared by the whole session."""
    path = os.environ.get("DSSL_TEST_CACHE_DIR")
    return Path(path) if path else tmp_path_factory.mktemp("data-cache")


@pytest.fixture
def one_torch_thread():
    """Tiny models: one torch thread is faster than two fighting other jobs for a shared core."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
