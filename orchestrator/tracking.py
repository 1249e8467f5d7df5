"""MLflow tracking from the driver: one parent run per sweep, one child run per trial.

Trials never write to MLflow themselves: they report to Ray Tune, and this callback,
running in the driver, is the store's only writer (several processes writing one SQLite
file hit "database is locked"). Runs are found again by tags, so a resumed sweep keeps
logging into the parent and child runs it started.

What a user of MLflow expects is filled in here too: the experiment is marked as a
model-training experiment (so the UI opens on its runs, not on the GenAI overview), its
artifacts live beside the store (never in a `ray job submit` working directory), every
run carries MLflow's own source tags, a child run lists the datasets it read and holds
its final backbone as an MLflow model.

Tune runs its callbacks on its event loop, so the callback only snapshots what a trial
reported and hands the writes to one background thread (`MLflowWriter`), which performs
them in order and is drained, with a bounded wait, before the sweep exits.
"""
from __future__ import annotations

import functools
import getpass
import hashlib
import json
import logging
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_DATASET_CONTEXT,
    MLFLOW_GIT_COMMIT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)
from ray.tune import Callback

from datasets.cache import file_stamp
from datasets.ray_connection import REPO_ROOT
from datasets.registry import ConfigError
from orchestrator.naming import trial_label
from trainables.config import TrialConfig

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
METRIC_PREFIXES = ("pretrain/", "ris/", "probe/", "data/", "tracks/")
# A trial's data figures (image counts, targets scored, skipped files) are constants of the
# trial, not measurements over time: logged as tags, so MLflow's charts and compare page
# show the science, not a bar chart of equal counts.
CONSTANT_PREFIX = "data/"
TAG_SWEEP = "dssl.sweep"
TAG_SWEEP_DIR = "dssl.sweep_dir"
TAG_TRIAL_ID = "dssl.trial_id"
TAG_GIT_DIRTY = "dssl.git_dirty"  # "true" when the tree had uncommitted changes to tracked files
GIT_COMMIT_ENV_VAR = "DSSL_GIT_COMMIT"  # the submitter's commit where there is no clone (the image, a job)
TAG_ERROR = "dssl.error"  # a failed trial's error
TAG_CHECKPOINT = "dssl.checkpoint"  # the checkpoint the child's logged model was read from
TAG_MODEL_URI = "dssl.model_uri"
TAG_MODEL_FORMAT = "dssl.model_format"  # "pt2" (torch.export), or "pickle" when export failed
TAG_EXPORT_ERROR = "dssl.export_error"  # why torch.export failed, when the model is pickled
TAG_COMPARE_URL = "dssl.compare_url"  # parent: the compare-runs page of its children
TAG_RUNS_URL = "dssl.runs_url"  # parent: the runs table filtered to its children
TAG_TRACKING_ERRORS = "dssl.tracking_errors"  # parent: MLflow writes lost after retries
TAG_KNOBS = "dssl.knobs"  # parent: the swept knobs, comma separated (rows of its tables)
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own key: the UI nests child runs by it
# MLflow 3's UI reads this experiment tag to choose its page: "custom_model_development"
# opens the training-runs view, anything GenAI (or no tag on an empty experiment) the
# traces overview (mlflow/server/js: ExperimentKind.CUSTOM_MODEL_DEVELOPMENT).
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
ARTIFACTS_FOLDER = "mlartifacts"  # beside a SQLite store, as `mlflow server` names its own
MODEL_NAME = "backbone"
ERROR_TAG_CHARS = 4000  # MLflow caps tag values; the end of a traceback says the most


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


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or not a clone (a `ray job submit` working directory)


def git_commit() -> str:
    """The submitter's commit: `DSSL_GIT_COMMIT` when set, else what git says here.

    The variable carries it where there is no clone: the project's image (built with
    `--build-arg GIT_COMMIT=$(git rev-parse HEAD)`, orchestrator/clusters/Dockerfile) and
    a job submitted with it in `--runtime-env-json`'s `env_vars`.
    """
    return os.environ.get(GIT_COMMIT_ENV_VAR, "").strip() or _git("rev-parse", "HEAD") or "unknown"


def git_dirty() -> str:
    """Whether tracked files differ from the commit: "true", "false", or "unknown" without git."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return "unknown" if status is None else str(bool(status)).lower()


def source_name(argv0: str | None = None) -> str:
    """The entry script, relative to the repository when inside it (as the Source column shows)."""
    script = Path(argv0 if argv0 is not None else (sys.argv[0] or "python")).resolve()
    try:
        return str(script.relative_to(REPO_ROOT))
    except ValueError:
        return script.name


def source_tags(script: str | None = None) -> dict[str, str]:
    """MLflow's own run tags (Source and User columns) and whether the tree was clean."""
    tags = {MLFLOW_SOURCE_NAME: source_name(script), MLFLOW_SOURCE_TYPE: "LOCAL",
            MLFLOW_USER: _user(), TAG_GIT_DIRTY: git_dirty()}
    commit = git_commit()
    if commit != "unknown":
        tags[MLFLOW_GIT_COMMIT] = commit
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts, chosen explicitly.

    Beside a SQLite store (`<store folder>/mlartifacts`), so that artifacts survive with
    the store; a relative default would land in the process's working directory, which
    under `ray job submit` is a temporary copy deleted with the job. A tracking server
    (http/https) keeps its own default: its proxied artifact store. A database server has
    no folder to sit beside: a sweep refuses it (`orchestrator.mlflow_server.check_tracking_uri`).
    """
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        return (Path(tracking_uri[len(prefix):]).resolve().parent / ARTIFACTS_FOLDER).as_uri()
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        store = Path(tracking_uri.removeprefix("file://").removeprefix("file:"))
        return (store.resolve().parent / ARTIFACTS_FOLDER).as_uri()
    return None


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The experiment's id, created (artifacts beside the store) or reused, tagged for training runs."""
    found = client.get_experiment_by_name(name)
    if found is None:
        experiment_id = client.create_experiment(name, artifact_location=artifact_location(tracking_uri))
    else:
        experiment_id = found.experiment_id
        if found.lifecycle_stage == "deleted":
            raise ConfigError(f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments "
                              "restore) or choose another --experiment")
    client.set_experiment_tag(experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_TRAINING)
    return experiment_id


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


@functools.lru_cache(maxsize=64)
def listing_digest(root: str) -> tuple[str, int]:
    """A digest of a dataset's file listing (relative paths and `file_stamp`s) and its
    file count.

    Cheap next to reading the images, and it changes when a file is added, removed or
    rewritten (the file-change rule of `datasets.cache.file_stamp`): enough to tell two
    datasets apart in the UI.
    """
    digest, count = hashlib.sha256(), 0
    base = Path(root)
    entries = []
    for folder, _, files in os.walk(base):
        for name in files:
            path = Path(folder) / name
            entries.append(f"{path.relative_to(base).as_posix()}\t{file_stamp(path)}\n")
    for entry in sorted(entries):
        digest.update(entry.encode())
        count += 1
    return digest.hexdigest()[:16], count


def dataset_inputs(trial: TrialConfig) -> list[DatasetInput]:
    """The datasets a trial read, one per data role: what the UI's Datasets column lists.

    Named `<role>:<source>`, with the root as a local source and a digest of its file
    listing; the context says whether the method trained on it or evaluation read it.
    """
    inputs = []
    for role, source in trial.data.items():
        root = str(trial.root(role).resolve())
        if Path(root).is_dir():
            digest, count = listing_digest(root)
            profile = json.dumps({"num_files": count})
        else:  # a remote root: its name stands in for its listing
            digest, profile = hashlib.sha256(root.encode()).hexdigest()[:16], None
        context = "training" if role in trial.method.roles else "evaluation"
        dataset = Dataset(name=f"{role}:{source.name}", digest=digest, source_type="local",
                          source=json.dumps({"uri": root}), profile=profile)
        inputs.append(DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return inputs


def metrics_of(result: dict[str, Any]) -> dict[str, float]:
    """The project's metrics in a Tune result (names as in shared/DESIGN.md)."""
    out = {}
    for key, value in result.items():
        if key.startswith(METRIC_PREFIXES) and isinstance(value, (int, float)):
            if not isinstance(value, bool) and math.isfinite(value):
                out[key] = float(value)
    return out


def split_constants(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags): the `data/*` figures of a result become tag values."""
    tags = {k: f"{v:g}" for k, v in metrics.items() if k.startswith(CONSTANT_PREFIX)}
    return {k: v for k, v in metrics.items() if k not in tags}, tags


def log_backbone(client: MlflowClient, experiment_id: str, run_id: str, trial: TrialConfig,
                 checkpoint_file: Path, registered_model_name: str = "") -> str:
    """Log a trial's final backbone as an MLflow model on its child run; return the model URI.

    The backbone is rebuilt on the driver from the trial's last checkpoint (read with
    weights_only=True, trainables.evaluation.load_backbone), with an input example of the
    trial's image size so the model has a signature. `mlflow.pytorch.log_model` writes
    through the process's tracking URI, so it is pointed at this store for the call, and
    it would file the model under the process's active experiment, so the model is
    created here first, in the run's experiment, with the trial's params. The
    requirements are given, not inferred: inference loads the model in a subprocess.

    The model is saved with torch.export (`pt2`: loading it runs no pickled code). A
    backbone torch.export cannot trace is saved pickled instead, and says so: the run and
    the logged model are tagged `dssl.model_format` = `pickle`, with the reason in
    `dssl.export_error` (`pt2` otherwise), as README promises.
    """
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch
    import torchvision

    from trainables.evaluation import load_backbone

    backbone = load_backbone(trial, checkpoint_file)
    # A batch of two: torch.export keeps a size-1 dimension static, and the batch should not be.
    example = np.random.default_rng(0).standard_normal(
        (2, 3, trial.image_size, trial.image_size)).astype(np.float32)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        def log_as(serialization_format: str):
            # A logged model per attempt: a failed attempt has already linked its model to the
            # run as an output, and a second link of the same pair is refused by the store.
            model = client.create_logged_model(experiment_id, name=MODEL_NAME, source_run_id=run_id,
                                               params={k: str(v) for k, v in trial.flat().items()})
            try:
                return mlflow.pytorch.log_model(
                    backbone, name=MODEL_NAME, run_id=run_id, model_id=model.model_id, input_example=example,
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                                      f"torchvision=={torchvision.__version__.split('+')[0]}"],
                    registered_model_name=registered_model_name or None,
                    serialization_format=serialization_format,
                )
            except Exception:
                client.delete_logged_model(model.model_id)  # no half-written model beside the real one
                raise
        tags = {TAG_MODEL_FORMAT: "pt2"}
        try:
            info = log_as("pt2")
        except Exception as err:  # noqa: BLE001 - a part's backbone torch.export cannot trace
            reason = f"{type(err).__name__}: {err}"[:ERROR_TAG_CHARS]
            log.warning("torch.export failed on %s's backbone (%s); logging it pickled, tagged %s=pickle",
                        trial.method.name, reason.splitlines()[0], TAG_MODEL_FORMAT)
            tags = {TAG_MODEL_FORMAT: "pickle", TAG_EXPORT_ERROR: reason}
            info = log_as("pickle")
    finally:
        mlflow.set_tracking_uri(previous)
    client.set_logged_model_tags(info.model_id, tags)
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    return info.model_uri


def checkpoint_uri(checkpoint_dir: str, sweep_dir: str) -> str:
    """A reported checkpoint folder as a location a user can open: Tune reports a checkpoint
    on object storage as a path inside the bucket (``bucket/...``), without the sweep's scheme."""
    scheme, sep, _ = sweep_dir.partition("://")
    if sep and "://" not in checkpoint_dir and not Path(checkpoint_dir).is_absolute():
        return f"{scheme}://{checkpoint_dir}"
    return checkpoint_dir


def checkpoint_file(checkpoint: str, scratch: Path) -> Path:
    """`checkpoint.pt` of a checkpoint folder (a local path or a `checkpoint_uri`), copied to
    `scratch` when it is on remote storage."""
    from trainables.pretrain import CHECKPOINT_FILE

    if "://" not in checkpoint:
        return Path(checkpoint) / CHECKPOINT_FILE
    import pyarrow.fs

    filesystem, folder = pyarrow.fs.FileSystem.from_uri(checkpoint)
    target = scratch / CHECKPOINT_FILE
    with filesystem.open_input_stream(f"{folder.rstrip('/')}/{CHECKPOINT_FILE}") as src:
        target.write_bytes(src.read())
    return target


class SweepTracker:
    """The parent run of one sweep, found again by its sweep folder on resume."""

    def __init__(self, tracking_uri: str, experiment: str, sweep_name: str, sweep_dir: str,
                 script: str | None = None):
        self.tracking_uri = tracking_uri
        use_one_retry_policy()
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.sweep_name = sweep_name
        self.sweep_dir = sweep_dir
        self.source_tags = source_tags(script)
        self.experiment_id = ensure_experiment(self.client, experiment, tracking_uri)
        self.parent_run_id = self._find_or_create_parent()

    def _search(self, filter_string: str, max_results: int = 10):
        return self.client.search_runs(
            [self.experiment_id], filter_string=filter_string, max_results=max_results,
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
                  "git_commit": git_commit(), **self.source_tags},
        )
        return run.info.run_id

    def log_sweep(self, params: dict[str, Any], tags: dict[str, str]) -> None:
        self.client.log_batch(
            self.parent_run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )

    def children(self):
        """The sweep's child runs, oldest first."""
        return self._search(f"tags.`{TAG_PARENT}` = '{self.parent_run_id}'", max_results=10000)

    def find_child(self, trial_id: str) -> str | None:
        runs = self._search(
            f"tags.`{TAG_PARENT}` = '{self.parent_run_id}' and tags.`{TAG_TRIAL_ID}` = '{trial_id}'"
        )
        return runs[0].info.run_id if runs else None

    def child_run(self, trial_id: str, trial_name: str, params: dict[str, Any],
                  tags: dict[str, str], inputs: list[DatasetInput] = ()) -> str:
        """The child run of a trial: found by its trial id, or created with its params and datasets."""
        found = self.find_child(trial_id)
        if found:
            return found
        run = self.client.create_run(
            self.experiment_id,
            run_name=trial_name,
            tags={TAG_PARENT: self.parent_run_id, TAG_TRIAL_ID: trial_id,
                  TAG_SWEEP: self.sweep_name, **self.source_tags, **tags},
        )
        self.client.log_batch(
            run.info.run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())]
        )
        if inputs:
            self.client.log_inputs(run.info.run_id, datasets=list(inputs))
        return run.info.run_id

    def mark_killed(self) -> list[str]:
        """An interrupted sweep: the parent and every child still RUNNING become KILLED."""
        killed = [r.info.run_id for r in self.children() if r.info.status == "RUNNING"]
        for run_id in killed:
            self.client.set_terminated(run_id, status="KILLED")
        self.client.set_terminated(self.parent_run_id, status="KILLED")
        return killed

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_run_id, status=status)


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
