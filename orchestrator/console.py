"""What a sweep shows in the terminal: its progress and the warnings that matter, not logs.

`Console` (the command line's default; `--verbose` goes without it) sends everything the
process and Ray write to stdout and stderr (Ray's and Tune's logs, Tune's status tables,
Ray Data's progress bars, the workers' output that Ray forwards to the driver) to
`sweep.log` in the sweep's folder, by file descriptor, so that output from C++ and from
child processes goes there too. The terminal keeps:

* `SweepProgress`, a Ray Tune callback: trials done / running / left, each running trial's
  epoch and loss, elapsed time and an estimate of what is left. On a terminal it is a live
  tqdm view; otherwise (`ray job submit`, a pipe, a file) plain lines, one per event.
* warnings of this project's own loggers (an advisory, a skipped file, a refused
  setting), each message once;
* what the command prints at the end (the summary).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback

from orchestrator.naming import trial_label

LOG_FILE = "sweep.log"
# Loggers whose warnings reach the terminal: this project's. Ray's go to the log file.
PROJECT_LOGGERS = ("orchestrator", "trainables", "datasets", "__main__")
REFRESH_SECONDS = 1.0  # the live view's clock: redrawn at most this often between events

_active: Console | None = None  # the console of this process's sweep, if any


def log_path(experiment_path: str, name: str) -> Path:
    """`sweep.log` in the sweep's folder; for remote storage (s3://...) a local folder of that name."""
    if "://" in experiment_path:
        return Path.home() / "ray_results" / name / LOG_FILE
    return Path(experiment_path) / LOG_FILE


class _OnceEach(logging.Filter):
    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


class _TerminalHandler(logging.Handler):
    """Project warnings to the terminal, above the live view."""

    def __init__(self, console: Console):
        super().__init__(logging.WARNING)
        self.console = console
        self.addFilter(_OnceEach())
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.write(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never end the sweep
            self.handleError(record)


class _Pending:
    """The root log handler's stream: held until the log file exists, then stderr (the log file)."""

    def __init__(self):
        self.lines: list[str] = []
        self.started = False

    def write(self, text: str) -> None:
        if self.started:
            sys.stderr.write(text)
        else:
            self.lines.append(text)

    def flush(self) -> None:
        if self.started:
            sys.stderr.flush()


class Console:
    """The terminal of a sweep run from the command line: progress and warnings; the rest to a log."""

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream
        self.terminal: TextIO | None = None
        self.tty = False
        self.path: Path | None = None
        self._saved: list[int] = []
        self._streams: tuple = ()
        self._log = None
        self._pending = _Pending()
        self._handlers: list[tuple[logging.Logger, logging.Handler]] = []
        self._root_level = logging.getLogger().level
        self.progress: _View | None = None

    # -- set-up ------------------------------------------------------------------------
    def __enter__(self) -> Console:
        global _active
        sys.stdout.flush()
        self._owned = False
        if self._stream is not None:
            self.terminal = self._stream
        else:
            try:  # a copy of the descriptor: the terminal stays reachable once fd 1 is the log
                self.terminal = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
                self._owned = True
            except (AttributeError, OSError, ValueError):  # a stream without one (a test's capture)
                self.terminal = sys.stdout
        self.tty = self.terminal.isatty() and _columns(self.terminal) > 0  # a pty of no size: lines
        root = logging.getLogger()
        file_handler = logging.StreamHandler(self._pending)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(file_handler)
        root.setLevel(logging.INFO)
        self._handlers.append((root, file_handler))
        terminal_handler = _TerminalHandler(self)
        for name in PROJECT_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(terminal_handler)
            self._handlers.append((logger, terminal_handler))
        _active = self
        return self

    def start(self, path: Path) -> None:
        """Send this process's stdout and stderr (and its future children's) to `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.write(f"Log (Ray, Tune, Ray Data; --verbose shows it here): {path}")
        sys.stdout.flush()
        sys.stderr.flush()
        self._log = open(path, "a", buffering=1)  # noqa: SIM115 - closed in __exit__
        for fd in (1, 2):
            self._saved.append(os.dup(fd))
            os.dup2(self._log.fileno(), fd)
        # Python's streams too: one may not write to its descriptor (a test's capture).
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = self._log
        self._pending.started = True
        for line in self._pending.lines:
            sys.stderr.write(line)
        self._pending.lines.clear()

    def __exit__(self, *exc) -> bool:
        global _active
        if self.progress is not None:
            self.progress.close()
        sys.stdout.flush()
        sys.stderr.flush()
        if self._streams:
            sys.stdout, sys.stderr = self._streams
            self._streams = ()
        for fd, saved in zip((1, 2), self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        self._saved.clear()
        if self._log is not None:
            self._log.close()
        for logger, handler in self._handlers:
            logger.removeHandler(handler)
        logging.getLogger().setLevel(self._root_level)
        if self.terminal is not None and self._owned:
            self.terminal.close()
        _active = None
        return False

    # -- output ------------------------------------------------------------------------
    def write(self, line: str) -> None:
        """One permanent line on the terminal, above the live view if there is one."""
        if self.progress is not None and self.tty:
            self.progress.write(line)
        else:
            print(line, file=self.terminal, flush=True)


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError):
        return 0


def active() -> Console | None:
    return _active


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _Trial:
    def __init__(self, label: str, epochs: int):
        self.label, self.epochs = label, epochs
        self.epoch: int | None = None  # the last epoch reported (0-based)
        self.loss: float | None = None
        self.started = time.time()

    def status(self) -> str:
        if self.epochs == 0:  # no training: the initial weights are evaluated
            return f"{self.label}  evaluating the random initialisation"
        if self.epoch is None:
            return f"{self.label}  starting"
        if self.epoch + 1 >= self.epochs:
            return f"{self.label}  evaluating (loss {self.loss:.3f})"
        return f"{self.label}  epoch {self.epoch + 1}/{self.epochs}  loss {self.loss:.3f}"


class _View:
    """The live view on a terminal: a line for the sweep, a line per running trial (tqdm)."""

    def __init__(self, terminal: TextIO, total: int):
        from tqdm import tqdm

        self._tqdm = tqdm
        # The estimate is the callback's (time per step so far), not tqdm's rate: steps are
        # set, not counted, and a trial's epochs and evaluation differ in length.
        self.bar = tqdm(total=total, file=terminal, dynamic_ncols=True, leave=False,
                        bar_format="{desc} |{bar:16}| {n}/{total} steps{postfix}")
        self.lines: dict[str, Any] = {}
        self.terminal = terminal

    def write(self, line: str) -> None:
        self._tqdm.write(line, file=self.terminal)

    def show(self, desc: str, eta: str, done_steps: int, trials: dict[str, _Trial]) -> None:
        for trial_id in [t for t in self.lines if t not in trials]:
            self.lines.pop(trial_id).close()
        for trial_id, trial in trials.items():
            if trial_id not in self.lines:
                self.lines[trial_id] = self._tqdm(file=self.terminal, bar_format="  {desc}", leave=False,
                                                  dynamic_ncols=True)
            self.lines[trial_id].set_description_str(trial.status(), refresh=False)
            self.lines[trial_id].refresh()
        self.bar.set_description_str(desc, refresh=False)
        self.bar.set_postfix_str(eta, refresh=False)
        self.bar.n = done_steps
        self.bar.refresh()

    def close(self) -> None:
        for line in self.lines.values():
            line.close()
        self.lines.clear()
        self.bar.close()


class SweepProgress(Callback):
    """Ray Tune callback (driver side) drawing the sweep's progress on the active `Console`.

    A step is a trial's epoch or its evaluation: the estimate of what is left is the time
    per step so far times the steps left. Without an active console (`--verbose`, tests,
    Tune's own output) it draws nothing. It holds only names and counts: Tune pickles it
    with the experiment's state.
    """

    def __init__(self, total_trials: int, knobs: list[str]):
        self.total_trials = total_trials
        self.knobs = list(knobs)
        self._reset()

    def _reset(self) -> None:
        self.started = time.time()
        self.running: dict[str, _Trial] = {}
        self.done = 0
        self.failed = 0
        self.steps_done = 0
        self.steps_total = 0
        self._drawn = 0.0
        self._view: _View | None = None

    def __getstate__(self):
        return {"total_trials": self.total_trials, "knobs": self.knobs}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    # -- what a trial is -----------------------------------------------------------------
    def _describe(self, trial) -> _Trial:
        from trainables.config import TrialConfig

        config = TrialConfig.from_nested(trial.config)
        return _Trial(trial_label(config.flat(), self.knobs, str(trial)), config.epochs)

    def _steps_of(self, trials) -> int:
        from trainables.config import TrialConfig

        total = 0
        for trial in trials:
            try:
                total += TrialConfig.from_nested(trial.config).epochs + 1
            except Exception:  # noqa: BLE001 - a trial we cannot read counts as one step
                total += 1
        return total

    # -- drawing -------------------------------------------------------------------------
    def _summary(self) -> str:
        left = self.total_trials - self.done - self.failed - len(self.running)
        failed = f", {self.failed} failed" if self.failed else ""
        return f"trials: {self.done} done{failed}, {len(self.running)} running, {max(left, 0)} left"

    def _eta(self) -> str:
        elapsed = time.time() - self.started
        if not self.steps_done:
            return f"{_clock(elapsed)} elapsed"
        left = elapsed / self.steps_done * max(self.steps_total - self.steps_done, 0)
        return f"{_clock(elapsed)} elapsed, about {_clock(left)} left"

    def _draw(self, event: str | None = None, force: bool = False) -> None:
        console = active()
        if console is None:
            return
        if console.tty:
            if self._view is None:
                self._view = _View(console.terminal, max(self.steps_total, 1))
                console.progress = self._view
            if event:
                self._view.write(event)
            now = time.time()
            if force or event or now - self._drawn >= REFRESH_SECONDS:
                self._drawn = now
                self._view.bar.total = max(self.steps_total, 1)
                self._view.show(self._summary(), self._eta(), self.steps_done, self.running)
        elif event:
            console.write(f"[{_clock(time.time() - self.started)}] {event} ({self._summary()}; {self._eta()})")

    # -- Tune's events -------------------------------------------------------------------
    def setup(self, **info):
        self.started = time.time()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.steps_total = self._steps_of(trials)
        self.running[trial.trial_id] = self._describe(trial)
        self._draw(None if active() and active().tty else f"started {self.running[trial.trial_id].label}",
                   force=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        state = self.running.get(trial.trial_id)
        if state is None or "pretrain/loss" not in result:
            return
        epoch = int(result.get("epoch", 0))
        if state.epoch is None or epoch > state.epoch:
            self.steps_done += epoch - (state.epoch if state.epoch is not None else -1)
        state.epoch, state.loss = epoch, float(result["pretrain/loss"])
        tty = active() is not None and active().tty
        self._draw(None if tty else f"{state.label}: epoch {epoch + 1}/{state.epochs}, loss {state.loss:.3f}",
                   force=True)

    def _finish(self, trial, how: str) -> None:
        state = self.running.pop(trial.trial_id, None) or self._describe(trial)
        seen = state.epoch + 1 if state.epoch is not None else 0
        self.steps_done += state.epochs + 1 - seen  # its remaining epochs (if any) and its evaluation
        loss = f", last loss {state.loss:.3f}" if state.loss is not None else ""
        self._draw(f"{how} {state.label} in {_clock(time.time() - state.started)}{loss}", force=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        self._finish(trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += 1
        self._finish(trial, "FAILED")

    def on_step_end(self, iteration, trials, **info):
        if self.running:
            self._draw()  # the clock moves between events

    def on_experiment_end(self, trials, **info):
        console = active()
        if self._view is not None:
            self._view.close()
            if console is not None:
                console.progress = None
            self._view = None
        if console is not None:
            console.write(f"Sweep done: {self._summary()}, in {_clock(time.time() - self.started)}")
