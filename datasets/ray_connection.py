"""Connecting to Ray, one way for every room: a local instance on a laptop, the cluster's
under `ray job submit` (or wherever ``$RAY_ADDRESS`` points).

It sits in `datasets/`, the lowest room, because the video pipeline's Ray Data stages
start Ray as well as the sweeps do (imports point down only).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Ray Train V2's controller polls its workers every 2 s by default, and a run waits on the
# polls (each epoch's report, its end): 0.5 s saved about 4 s of a 20 s one-trial test sweep
# on 2 cores, and a study trial reports 40 epochs. A local Ray's workers get it (the user's
# own value wins); a cluster's come from its job's runtime environment.
TRAIN_POLL_VAR, TRAIN_POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5"


def project_pythonpath() -> str:
    """PYTHONPATH that puts this repository ahead of site-packages.

    The project's `datasets/` package shares its name with Hugging Face's; entries of
    PYTHONPATH precede site-packages on `sys.path`, so workers import ours.
    """
    parts = [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


def on_cluster() -> bool:
    """True when a Ray cluster address is given (as `ray job submit` does); the rule is the
    data stages' own (`datasets.placement.submitted_to_cluster`)."""
    from datasets.placement import submitted_to_cluster

    return submitted_to_cluster()


def init_ray(num_cpus: int | None = None, num_gpus: int | None = None, quiet: bool = False) -> dict:
    """Start or join Ray once per process and return the cluster's resources.

    Ray already initialised in this process is used as it is. With `RAY_ADDRESS` set (a
    `ray job submit` driver, or a user pointing at a head), join that cluster and keep the
    job's runtime environment (its working_dir is already first on PYTHONPATH). Otherwise
    start a local instance of `num_cpus`/`num_gpus` (None: the machine's) with this
    repository on the workers' PYTHONPATH, Train's controller polling every `TRAIN_POLL_S`
    and the dashboard on 127.0.0.1: it serves Ray's
    state API, which Ray Train V2's placement-group cleaner polls; without it every Train
    run logs a warning every second or two and a dead controller's placement group is never
    freed, so a process whose Ray Data stage started Ray first must still have it.
    """
    import ray

    if not ray.is_initialized():
        common = dict(log_to_driver=not quiet, logging_level=logging.WARNING if quiet else logging.INFO)
        if on_cluster():
            ray.init(address=os.environ["RAY_ADDRESS"], **common)
        else:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=True, dashboard_host="127.0.0.1",
                     runtime_env={"env_vars": {"PYTHONPATH": project_pythonpath(),
                                               TRAIN_POLL_VAR: os.environ.get(TRAIN_POLL_VAR, TRAIN_POLL_S)}},
                     **common)
    return ray.cluster_resources()
