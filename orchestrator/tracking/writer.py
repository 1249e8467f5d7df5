"""Every MLflow write of a sweep: one retry policy, and one thread that performs the
writes in order.

Tune runs its callbacks on its event loop, so a callback only snapshots what a trial
reported and hands the writes to one background thread (`MLflowWriter`), which performs
them in order and is drained, with a bounded wait, before the sweep exits.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)


def with_retries(what: str, call: Callable[[], Any], delays: tuple[float, ...]) -> tuple[bool, Any]:
    """`(True, call())`, retrying after each of `delays` seconds; `(False, None)` if every try failed.

    Any exception is caught: a tracking server's hiccup (HTTP 5xx, a dropped connection,
    a locked database) must not end a sweep whose trials are fine.
    """
    for attempt in range(len(delays) + 1):
        try:
            return True, call()
        except Exception as err:  # noqa: BLE001 - see docstring
            if attempt == len(delays):
                log.error("MLflow: %s failed after %d tries, not recorded: %s", what, attempt + 1, err)
                return False, None
            log.warning("MLflow: %s failed (%s); retrying in %.1f s", what, err, delays[attempt])
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")


# One retry policy, ours (`with_retries`): MLflow's REST client also retries every HTTP
# request itself (7 times with exponential backoff, 120 s timeout each: minutes per call
# against a sick server), and ours wrapped it, multiplying both. Ours is the one kept: it
# covers the database stores too (a locked SQLite file, a dropped PostgreSQL connection),
# which MLflow's HTTP layer never sees, and it is where a lost write is counted. So this
# process turns MLflow's HTTP retries off and bounds each request, unless the user chose
# otherwise; a write then costs at most len(delays) + 1 requests. MLflow reads both
# variables at every request.
MLFLOW_HTTP_POLICY = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


def use_one_retry_policy() -> dict[str, str]:
    """Apply `MLFLOW_HTTP_POLICY` to the process's environment where unset; return what was set."""
    applied = {k: v for k, v in MLFLOW_HTTP_POLICY.items() if k not in os.environ}
    os.environ.update(applied)
    return applied


_WRITERS: set["MLflowWriter"] = set()  # open writers of this process, drained on interrupt
_WRITERS_LOCK = threading.Lock()


class MLflowWriter:
    """One thread that performs MLflow writes in the order they are submitted.

    A Tune callback runs on Tune's event loop: a slow write there (a model exported and
    uploaded, a dataset root listed, a sick server retried) stalls every trial's
    scheduling. The callback submits its writes here instead and returns at once. One
    thread, one queue: the writes of a run keep their order, and a SQLite store keeps
    one writer. `close` drains with a bounded wait and counts what was not written.
    """

    def __init__(self, name: str = "mlflow-writer"):
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self.lost = 0  # writes submitted but never confirmed: dropped, or still running at close
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        with _WRITERS_LOCK:
            _WRITERS.add(self)

    def submit(self, what: str, task: Callable[[], Any]) -> None:
        with self._lock:
            if not self._closed:
                self._queue.put((what, task))
                return
            self.lost += 1
        log.error("MLflow: %s not recorded: the sweep's writer is closed", what)

    def pending(self) -> int:
        """Writes submitted and not yet done (the running one included)."""
        return self._queue.unfinished_tasks

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                what, task = item
                try:
                    task()
                except Exception as err:  # noqa: BLE001 - a task's own bug must not stop later writes
                    with self._lock:
                        self.lost += 1
                    log.error("MLflow: %s failed, not recorded: %s", what, err, exc_info=True)
            finally:
                self._queue.task_done()

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every submitted write; whether all were done."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float) -> int:
        """Drain for up to `timeout` seconds, then stop; return the writes lost in all.

        Writes still queued at the deadline are dropped; one still running is counted lost
        (it is never waited for again). Later submits are refused and counted.
        """
        if not self._closed:
            if self.pending():
                log.info("MLflow: waiting up to %.0f s for %d writes (the trials' models among them)",
                         timeout, self.pending())
            self.drain(timeout)
        with self._lock:
            if self._closed:
                return self.lost
            self._closed = True
            dropped = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                dropped.append(item[0])
                self._queue.task_done()
            running = self._queue.unfinished_tasks
            self._queue.put(None)  # the thread stops after the running write, if any
            self.lost += len(dropped) + running
        for what in dropped:
            log.error("MLflow: %s not recorded: the sweep ended before it was written", what)
        if running:
            log.error("MLflow: a write still running after %.0f s is counted lost", timeout)
        with _WRITERS_LOCK:
            _WRITERS.discard(self)
        return self.lost


def close_writers(timeout: float) -> int:
    """Close every open writer of this process within `timeout` seconds in all; the writes lost."""
    deadline = time.monotonic() + timeout
    with _WRITERS_LOCK:
        writers = list(_WRITERS)
    return sum(w.close(max(0.0, deadline - time.monotonic())) for w in writers)
