"""MLflow tracking from the driver: one parent run per sweep, one child run per trial.

Trials never write to MLflow themselves: they report to Ray Tune, and this callback,
running in the driver, is the store's only writer (several processes writing one SQLite
file hit "database is locked"). Runs are found again by tags, so a resumed sweep keeps
logging into the parent and child runs it started.
"""
from __future__ import annotations

import logging
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from orchestrator.cluster import REPO_ROOT
from trainables.config import TrialConfig

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
METRIC_PREFIXES = ("pretrain/", "ris/", "probe/", "data/")
TAG_SWEEP = "dssl.sweep"
TAG_SWEEP_DIR = "dssl.sweep_dir"
TAG_TRIAL_ID = "dssl.trial_id"
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own key: the UI nests child runs by it


def resolve_tracking_uri(uri: str = "") -> str:
    """The explicit URI, else $MLFLOW_TRACKING_URI, else MLflow's own default store.

    A relative sqlite path is made absolute so that the UI command printed at the end
    works from any folder.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def metrics_of(result: dict[str, Any]) -> dict[str, float]:
    """The project's metrics in a Tune result (names as in shared/DESIGN.md)."""
    out = {}
    for key, value in result.items():
        if key.startswith(METRIC_PREFIXES) and isinstance(value, (int, float)):
            if not isinstance(value, bool) and math.isfinite(value):
                out[key] = float(value)
    return out


class SweepTracker:
    """The parent run of one sweep, found again by its sweep folder on resume."""

    def __init__(self, tracking_uri: str, experiment: str, sweep_name: str, sweep_dir: str):
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.sweep_name = sweep_name
        self.sweep_dir = sweep_dir
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id if found else self.client.create_experiment(experiment)
        )
        self.parent_run_id = self._find_or_create_parent()

    def _search(self, filter_string: str):
        return self.client.search_runs(
            [self.experiment_id], filter_string=filter_string, max_results=10,
            order_by=["attributes.start_time ASC"],
        )

    def _find_or_create_parent(self) -> str:
        runs = [
            r for r in self._search(f"tags.`{TAG_SWEEP_DIR}` = '{self.sweep_dir}'")
            if TAG_PARENT not in r.data.tags
        ]
        if runs:
            run_id = runs[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=self.sweep_name,
            tags={TAG_SWEEP: self.sweep_name, TAG_SWEEP_DIR: self.sweep_dir,
                  "git_commit": git_commit()},
        )
        return run.info.run_id

    def log_sweep(self, params: dict[str, Any], tags: dict[str, str]) -> None:
        self.client.log_batch(
            self.parent_run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )

    def child_run(self, trial_id: str, trial_name: str, params: dict[str, Any],
                  tags: dict[str, str]) -> str:
        """The child run of a trial: found by its trial id, or created with its params."""
        runs = self._search(
            f"tags.`{TAG_PARENT}` = '{self.parent_run_id}' and tags.`{TAG_TRIAL_ID}` = '{trial_id}'"
        )
        if runs:
            return runs[0].info.run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=trial_name,
            tags={TAG_PARENT: self.parent_run_id, TAG_TRIAL_ID: trial_id,
                  TAG_SWEEP: self.sweep_name, **tags},
        )
        self.client.log_batch(
            run.info.run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())]
        )
        return run.info.run_id

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_run_id, status=status)


class MLflowTrialCallback(Callback):
    """Ray Tune callback (driver side) that mirrors every trial into its child run.

    It holds only names (it is pickled with the Tuner's state and restored with it) and
    connects to MLflow in `setup`, finding the sweep's parent run by its folder. A child
    run's params are the trial's dotted keys (`TrialConfig.flat`: only the parts it
    uses), and it is named by the swept `knobs`, e.g. ``method.crop_scale_min=0.08``.
    `pretrain/loss` and the other per-epoch metrics are stepped by the trial's `epoch`.
    """

    def __init__(self, tracking_uri: str, experiment: str, sweep_name: str, sweep_dir: str,
                 tags: dict[str, str] | None = None, knobs: list[str] | None = None):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.sweep_name = sweep_name
        self.sweep_dir = sweep_dir
        self.tags = dict(tags or {})
        self.knobs = list(knobs or [])
        self._tracker: SweepTracker | None = None
        self._runs: dict[str, str] = {}

    def __getstate__(self):
        return {**self.__dict__, "_tracker": None, "_runs": {}}

    @property
    def tracker(self) -> SweepTracker:
        if self._tracker is None:
            self._tracker = SweepTracker(self.tracking_uri, self.experiment, self.sweep_name,
                                         self.sweep_dir)
        return self._tracker

    def setup(self, **info):
        self.tracker  # connect (and create the parent run) before the first trial

    def _run_id(self, trial) -> str:
        if trial.trial_id not in self._runs:
            params = TrialConfig.from_nested(trial.config).flat()
            name = " ".join(f"{k}={params.get(k)}" for k in self.knobs) or str(trial)
            self._runs[trial.trial_id] = self.tracker.child_run(trial.trial_id, name, params, self.tags)
        return self._runs[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.tracker.client.update_run(self._run_id(trial), status="RUNNING")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        metrics = metrics_of(result)
        if not metrics:
            return
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        timestamp = int(float(result.get("timestamp") or time.time()) * 1000)
        self.tracker.client.log_batch(
            self._run_id(trial),
            metrics=[Metric(k, v, timestamp, step) for k, v in metrics.items()],
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.tracker.client.set_terminated(self._run_id(trial), status="FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.tracker.client.set_terminated(self._run_id(trial), status="FAILED")
