"""The Ray Tune callback, on the driver, that mirrors every trial into its child run.

What a user of MLflow expects is filled in here: every run carries MLflow's own source
tags, a child run lists the datasets it read and holds its final backbone as an MLflow
model.
"""
from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlflow.entities import Metric, RunTag
from ray.tune import Callback

from orchestrator.naming import trial_label
from orchestrator.tracking.checkpoints import checkpoint_file, checkpoint_uri
from orchestrator.tracking.dataset_inputs import dataset_inputs
from orchestrator.tracking.keys import (
    ERROR_TAG_CHARS,
    TAG_CHECKPOINT,
    TAG_ERROR,
    TAG_MODEL_URI,
    TAG_TRACKING_ERRORS,
    metrics_of,
    split_constants,
)
from orchestrator.tracking.logged_model import log_backbone
from orchestrator.tracking.runs import SweepTracker
from orchestrator.tracking.writer import MLflowWriter, with_retries
from trainables.config import TrialConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialView:
    """What the writer needs of a Tune trial, taken on Tune's event loop (Tune's `Trial`
    object keeps changing there)."""

    trial_id: str
    label: str  # str(trial): the run name when no knob is swept
    config: TrialConfig

    @classmethod
    def of(cls, trial) -> "TrialView":
        return cls(trial.trial_id, str(trial), TrialConfig.from_nested(trial.config))


class MLflowTrialCallback(Callback):
    """Ray Tune callback (driver side) that mirrors every trial into its child run.

    It holds only names (it is pickled with the Tuner's state and restored with it) and
    connects to MLflow in `setup`, finding the sweep's parent run by its folder. A child
    run's params are the trial's dotted keys (`TrialConfig.flat`: only the parts it
    uses), and it is named by the swept `knobs`, e.g. ``method.crop_scale_min=0.08``
    (``... seed=1`` when seeds are swept too). `pretrain/loss` and the other per-epoch
    metrics are stepped by the trial's `epoch`; the datasets a trial reads are its
    inputs; when it completes, its last checkpoint's backbone is logged as its model.

    The hooks return at once: each hands its writes to the callback's `MLflowWriter`
    (one thread, in order), which `on_experiment_end` drains for up to `DRAIN_TIMEOUT_S`
    (on SIGTERM or a second Ctrl-C, `InterruptMarker` drains it for a few seconds).
    Every MLflow call is retried (`RETRY_DELAYS`); one that still fails, or a write the
    drain did not reach, is logged and counted (`errors`, `writer.lost`, and the parent's
    `dssl.tracking_errors` tag), never raised: a tracking hiccup must not end the sweep.
    """

    RETRY_DELAYS: tuple[float, ...] = (1.0, 4.0)
    # Bounds the wait at the end of a sweep for the writes still queued: in the worst case
    # a few trials' backbones, exported and uploaded one after another.
    DRAIN_TIMEOUT_S: float = 600.0

    def __init__(self, tracking_uri: str, experiment: str, sweep_name: str, sweep_dir: str,
                 tags: dict[str, str] | None = None, knobs: list[str] | None = None,
                 log_models: bool = True, registered_model_name: str = ""):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.sweep_name = sweep_name
        self.sweep_dir = sweep_dir
        self.tags = dict(tags or {})
        self.knobs = list(knobs or [])
        self.log_models = log_models
        self.registered_model_name = registered_model_name
        self.errors = 0
        self._checkpoints: dict[str, str] = {}  # trial id -> its last reported checkpoint folder
        self._tracker: SweepTracker | None = None
        self._writer: MLflowWriter | None = None
        # Read and written by the writer thread only:
        self._runs: dict[str, str] = {}
        self._epochs: dict[str, set[int]] = {}  # trial id -> epochs whose pretrain/ metrics are logged

    def __getstate__(self):
        return {**self.__dict__, "_tracker": None, "_writer": None, "_runs": {}, "_epochs": {}}

    @property
    def tracker(self) -> SweepTracker:
        if self._tracker is None:
            self._tracker = SweepTracker(self.tracking_uri, self.experiment, self.sweep_name,
                                         self.sweep_dir)
        return self._tracker

    @property
    def writer(self) -> MLflowWriter:
        if self._writer is None:
            self._writer = MLflowWriter(name=f"mlflow-writer-{self.sweep_name}")
        return self._writer

    def _try(self, what: str, call: Callable[[], Any]) -> tuple[bool, Any]:
        ok, value = with_retries(what, call, self.RETRY_DELAYS)
        self.errors += not ok
        return ok, value

    def setup(self, **info):
        # Connect (and find the parent run) before the first trial, on Tune's loop: a store
        # that cannot be reached fails the sweep here, before any trial runs.
        self.tracker
        self.writer

    def run_name(self, params: dict[str, Any], fallback: str) -> str:
        """The swept knobs' short labels (orchestrator.naming), seed last: `crop_min=0.08`."""
        return trial_label(params, self.knobs, fallback)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for the writes submitted so far (up to `timeout` s, default DRAIN_TIMEOUT_S)."""
        return self._writer is None or self._writer.drain(self.DRAIN_TIMEOUT_S if timeout is None else timeout)

    # On the writer thread -------------------------------------------------------------

    def _run_id(self, trial: TrialView) -> str | None:
        if trial.trial_id not in self._runs:
            params = trial.config.flat()
            ok, run_id = self._try(f"child run of {trial.trial_id}", lambda: self.tracker.child_run(
                trial.trial_id, self.run_name(params, trial.label), params, self.tags,
                dataset_inputs(trial.config)))
            if not ok:
                return None
            self._runs[trial.trial_id] = run_id
        return self._runs[trial.trial_id]

    def _start(self, trial: TrialView) -> None:
        run_id = self._run_id(trial)
        if run_id is not None:
            self._try(f"start of {trial.trial_id}",
                      lambda: self.tracker.client.update_run(run_id, status="RUNNING"))

    def _log_result(self, trial: TrialView, metrics: dict[str, float], constants: dict[str, str],
                    step: int, timestamp: int) -> None:
        run_id = self._run_id(trial)
        if run_id is None:
            return
        if constants:
            self._try(f"data figures of {trial.trial_id}", lambda: self.tracker.client.log_batch(
                run_id, tags=[RunTag(k, v) for k, v in constants.items()]))
        if "pretrain/loss" in metrics:
            # A Train run restarted from an older checkpoint than its last report (a worker
            # died before its checkpoint was registered) repeats epochs: the first report
            # of an epoch stands, so the history has no duplicates (nor gaps).
            logged = self._logged_epochs(trial.trial_id, run_id)
            if step in logged:
                metrics = {k: v for k, v in metrics.items() if not k.startswith("pretrain/")}
            logged.add(step)
        if not metrics:
            return
        batch = [Metric(k, v, timestamp, step) for k, v in metrics.items()]
        self._try(f"metrics of {trial.trial_id} (step {step})",
                  lambda: self.tracker.client.log_batch(run_id, metrics=batch))

    def _logged_epochs(self, trial_id: str, run_id: str) -> set[int]:
        """Epochs of `pretrain/loss` in the run: read once per driver (a resumed sweep's too)."""
        if trial_id not in self._epochs:
            ok, history = self._try(f"loss history of {trial_id}",
                                    lambda: self.tracker.client.get_metric_history(run_id, "pretrain/loss"))
            self._epochs[trial_id] = {m.step for m in history} if ok else set()
        return self._epochs[trial_id]

    def _complete(self, trial: TrialView, checkpoint: str | None) -> None:
        run_id = self._run_id(trial)
        if run_id is not None and checkpoint and self.log_models:
            self._try(f"model of {trial.trial_id}", lambda: self._log_model(run_id, trial, checkpoint))
        self._terminate(trial, "FINISHED")

    def _log_model(self, run_id: str, trial: TrialView, checkpoint: str) -> None:
        checkpoint = checkpoint_uri(checkpoint, self.sweep_dir)
        with tempfile.TemporaryDirectory() as scratch:
            path = checkpoint_file(checkpoint, Path(scratch))
            uri = log_backbone(self.tracker.client, self.tracker.experiment_id, run_id,
                               trial.config, path, self.registered_model_name)
        self.tracker.client.log_batch(run_id, tags=[RunTag(TAG_CHECKPOINT, checkpoint),
                                                    RunTag(TAG_MODEL_URI, uri)])

    def _terminate(self, trial: TrialView, status: str, tags: dict[str, str] | None = None) -> None:
        run_id = self._run_id(trial)
        if run_id is None:
            return
        if tags:
            self._try(f"tags of {trial.trial_id}", lambda: self.tracker.client.log_batch(
                run_id, tags=[RunTag(k, v) for k, v in tags.items()]))
        self._try(f"{status} of {trial.trial_id}",
                  lambda: self.tracker.client.set_terminated(run_id, status=status))

    # Tune's hooks, on its event loop: snapshot, submit, return ------------------------

    def on_trial_start(self, iteration, trials, trial, **info):
        view = TrialView.of(trial)
        self.writer.submit(f"start of {trial.trial_id}", lambda: self._start(view))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("checkpoint_path"):  # added by Train's TuneReportCallback
            self._checkpoints[trial.trial_id] = str(result["checkpoint_path"])
        metrics, constants = split_constants(metrics_of(result))
        if not metrics and not constants:
            return
        view = TrialView.of(trial)
        for key, value in constants.items():
            if "skipped" in key and float(value):
                log.warning("trial %s: %s = %s (input that could not be read was left out; tag on its MLflow run)",
                            self.run_name(view.config.flat(), view.label), key, value)
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        timestamp = int(float(result.get("timestamp") or time.time()) * 1000)
        self.writer.submit(f"result of {trial.trial_id} (step {step})",
                           lambda: self._log_result(view, metrics, constants, step, timestamp))

    def on_trial_complete(self, iteration, trials, trial, **info):
        view, checkpoint = TrialView.of(trial), self._checkpoints.get(trial.trial_id)
        self.writer.submit(f"model and end of {trial.trial_id}", lambda: self._complete(view, checkpoint))

    def on_trial_error(self, iteration, trials, trial, **info):
        view, error = TrialView.of(trial), trial_error(trial)
        self.writer.submit(f"failure of {trial.trial_id}",
                           lambda: self._terminate(view, "FAILED", {TAG_ERROR: error}))

    def on_experiment_end(self, trials, **info):
        # The writer is stopped first, so this tag is written by one thread at a time too.
        lost = self._writer.close(self.DRAIN_TIMEOUT_S) if self._writer is not None else 0
        self._try("tracking error count", lambda: self.tracker.client.set_tag(
            self.tracker.parent_run_id, TAG_TRACKING_ERRORS, str(self.errors + lost)))


def trial_error(trial) -> str:
    """A failed trial's error as Tune recorded it; the end of it, as tags are capped."""
    text = ""
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        text = Path(path).read_text(errors="replace")
    if not text:
        try:
            text = str(trial.get_error() or "")
        except Exception:  # noqa: BLE001 - the tag is a courtesy; the status says FAILED
            text = ""
    return (text or "unknown error (see the trial's log)")[-ERROR_TAG_CHARS:]
