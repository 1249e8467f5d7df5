"""A process pool for the generators: one job per object, results in job order."""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import cv2

Job = TypeVar("Job")
Result = TypeVar("Result")


def default_processes() -> int:
    """At most two processes, fewer if this process may use fewer cores.

    Two because the default preset targets a 2-core laptop and generation runs once;
    pass ``processes`` explicitly to use more.
    """
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(2, available))


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would oversubscribe


def run_jobs(function: Callable[[Job], Result], jobs: Sequence[Job], processes: int | None = None) -> list[Result]:
    """``[function(job) for job in jobs]``, across ``processes`` worker processes.

    Workers are spawned, not forked: callers include Ray workers, whose gRPC threads
    make ``fork`` unsafe. With one process (or one job) everything runs inline.
    Results do not depend on the number of processes: each job seeds itself.
    """
    processes = default_processes() if processes is None else int(processes)
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if processes == 1 or len(jobs) <= 1:
        return [function(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(processes, len(jobs)), mp_context=context, initializer=_init_worker) as pool:
        return list(pool.map(function, jobs, chunksize=1))

