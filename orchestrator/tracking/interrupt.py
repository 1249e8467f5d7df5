"""An interrupted sweep (Ctrl-C, SIGTERM, `ray job stop`): its runs marked KILLED."""
from __future__ import annotations

import threading

from orchestrator.tracking.runs import SweepTracker
from orchestrator.tracking.writer import close_writers, with_retries


class InterruptMarker:
    """Makes an interrupted sweep's runs say so, even if the process is killed soon after.

    Within its `with` block (main thread only), SIGTERM (what `ray job stop` sends,
    SIGKILL following a few seconds later) starts marking the parent and its RUNNING
    children KILLED at once, in a thread (never in the handler: the interrupted code may
    hold the SQLite store's lock), and then asks Tune to stop as Ctrl-C does (Tune's own
    SIGINT handler), so that `Tuner.fit` returns and the sweep ends non-zero.
    """

    def __init__(self, tracker: SweepTracker):
        self.tracker = tracker
        self.signal: int | None = None
        self._thread: threading.Thread | None = None
        self._previous = None

    # `ray job stop` sends SIGKILL 3 s after SIGTERM (RAY_JOB_STOP_WAIT_TIME_S): the queued
    # writes get a moment, the KILLED marks the rest.
    DRAIN_S = 1.5

    def mark(self) -> None:
        """Drain the MLflow writers (briefly; what is left is counted lost), then mark KILLED:
        after the drain, so that no queued write turns a KILLED run back into RUNNING."""
        close_writers(self.DRAIN_S)
        with_retries("marking the sweep KILLED", self.tracker.mark_killed, (1.0,))

    def _on_sigterm(self, signum, frame):
        import signal as signals

        self.signal = signum
        if self._thread is None:
            self._thread = threading.Thread(target=self.mark, name="mark-killed", daemon=True)
            self._thread.start()
        tune_handler = signals.getsignal(signals.SIGINT)
        if callable(tune_handler):
            tune_handler(signals.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    def __enter__(self):
        import signal as signals

        if threading.current_thread() is threading.main_thread():
            self._previous = signals.signal(signals.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc):
        import signal as signals

        if self._previous is not None:
            signals.signal(signals.SIGTERM, self._previous)
        if self._thread is not None:
            self._thread.join()
        return False
