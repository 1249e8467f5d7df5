"""The per-trial function: one Ray Tune trial = one Ray Train run + its evaluation.

A Tune function trainable that builds a `TorchTrainer` and forwards the Train workers'
reports to Tune with `TuneReportCallback`, as Ray documents Train-inside-Tune now
(`Tuner(trainer)` is deprecated). Tune hands it the trial's nested config (a plain dict,
so Tune's own search space, dataframe and resume see real values); it is typed here and
the Train workers receive the typed `TrialConfig`. The Train run is named after the
trial and stored under the sweep's storage, so when a sweep is resumed the same Train run
picks up its latest checkpoint (model, optimizer, schedule) instead of starting over.

Evaluation is the trial's second stage: a Ray task of its own on the Train run's last
checkpoint (`trainables.evaluation.run_evaluation`), with the CPUs and memory the trial
states, never in this 0-CPU driver (which Tune packs onto the head); reported to Tune as
one more result at the last epoch's step, with `data/skipped_images` (unreadable images
of the last pretraining epoch and of the evaluation).

An ``epochs=0`` trial trains nothing: its checkpoint is the initial weights `build_model`
gives its seed (the weights its trained siblings of that seed start from), evaluated the
same way and reported at step 0 (a study's random-initialisation row, orchestrator.study).
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import ray.train
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from datasets.errors import DatasetFormatError
from datasets.registry import ConfigError, import_parts
from datasets.storage import storage_filesystem, use_driver_env
from trainables.config import TrialConfig
from trainables.evaluation import run_evaluation
from trainables.pretrain import CHECKPOINT_FILE, save_initial_checkpoint, train_loop_per_worker


log = logging.getLogger(__name__)
T = TypeVar("T")

# Retries happen at one level: this module's loop around the trial's Train run
# (`fit_with_retries`). Neither Tune (the sweep's FailureConfig, orchestrator.sweep) nor
# Train (`pretrain_trainer`) retries on its own: retries at both multiplied (Tune's 3
# restarts of a trial whose Train run restarts 3 times: the GPU group brought up 16 times
# for one error), and neither can tell an error that will recur from one that may pass.
# This level can: a deterministic error (a config or a data file the workers refuse) is
# raised at once, while a lost or preempted node is retried and the Train run, named after
# the trial, resumes from its last checkpoint. (A lost trial driver is not retried: drivers
# run on the head and CPU nodes, never on spot GPU nodes; `--resume` continues its trial.)
DETERMINISTIC_ERRORS: tuple[type[Exception], ...] = (ConfigError, DatasetFormatError)


def deterministic_cause(error: BaseException) -> BaseException | None:
    """The deterministic error (`DETERMINISTIC_ERRORS`) behind `error`, or None.

    A Train run's failure wraps its workers' errors: `WorkerGroupError.worker_failures`
    holds each rank's, wrapped again with its traceback (Train keeps the original in
    `_base_exc`); a `ControllerError` holds its `controller_failure`. All are searched, and
    the exceptions' causes."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, DETERMINISTIC_ERRORS):
            return current
        stack += [current.__cause__, getattr(current, "controller_failure", None),
                  getattr(current, "_base_exc", None), *getattr(current, "worker_failures", {}).values()]
    return None


def fit_with_retries(fit: Callable[[], T], max_failures: int) -> T:
    """`fit()`, called again after an error that may pass, at most `max_failures` times
    more; a deterministic error (`deterministic_cause`) is raised at once."""
    failures = 0
    while True:
        try:
            return fit()
        except Exception as error:
            cause = deterministic_cause(error)
            if cause is not None and failures < max_failures:
                log.error("not retried: %s would recur (%s)", type(cause).__name__, cause)
            if cause is not None or failures >= max_failures:
                raise
            failures += 1
            first_line = next(iter(str(error).splitlines()), "")
            log.warning("the Train run failed (%s: %s); retry %d of %d from its last checkpoint",
                        type(error).__name__, first_line, failures, max_failures)


def scaling_config(trial: TrialConfig) -> ray.train.ScalingConfig:
    return ray.train.ScalingConfig(
        num_workers=trial.num_workers,
        use_gpu=trial.use_gpu,
        resources_per_worker={"CPU": float(trial.cpus_per_worker)} | ({"GPU": 1.0} if trial.use_gpu else {})
        | trial.custom_worker_resources(),
    )


def pretrain_and_evaluate(config: dict[str, Any], storage_path: str, max_failures: int = 0,
                          part_modules: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
    """Tune trainable: pretrain the trial, evaluate on the last epoch, report.

    `storage_path` is the sweep's storage (local folder, NFS or s3://...); the Train run
    lives at `<storage_path>/<experiment>-train/<trial id>`. `part_modules` are imported
    first, so that parts registered outside the project (a user's module) resolve here.
    `env` is the sweep driver's object-store and cache settings (`datasets.storage.driver_env`),
    set here and in the Train workers before anything reads storage.
    Each report of the Train run (rank 0's metrics, one per epoch) becomes a Tune result;
    the evaluation of its last checkpoint is the last one.
    """
    use_driver_env(env or {})
    import_parts(part_modules)
    trial = TrialConfig.from_nested(config)
    if trial.epochs == 0:
        report_initial_weights(trial)
        return
    result = fit_with_retries(lambda: pretrain_trainer(trial, storage_path, env or {}).fit(), max_failures)
    tune.report(evaluation_report(trial, result))


def report_initial_weights(trial: TrialConfig) -> None:
    """An epochs=0 trial: its seed's initial weights as the checkpoint, evaluated and reported."""
    with tempfile.TemporaryDirectory() as checkpoint_dir:
        checkpoint_file = Path(checkpoint_dir) / CHECKPOINT_FILE
        save_initial_checkpoint(checkpoint_file, trial)
        metrics = run_evaluation(trial).metrics  # the task rebuilds the same initial weights
        metrics |= trial.method.prepare(trial)  # its data's figures, as a trained trial reports them
        metrics |= trial.data_figures()
        tune.report(metrics | {"epoch": 0}, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))


def pretrain_trainer(trial: TrialConfig, storage_path: str, env: dict[str, str] | None = None) -> TorchTrainer:
    """The current Tune trial's Train run: its workers, storage and checkpoints. Train
    retries nothing itself (`fit_with_retries` does, at one level), bar a worker group that
    could not start yet (nodes still coming up: a wait for capacity, not a retry of work)."""
    context = tune.get_context()
    # Built here, where the driver's endpoint is set: it travels with the filesystem to the workers.
    filesystem, path = storage_filesystem(f"{storage_path.rstrip('/')}/{context.get_experiment_name()}-train")
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"trial": trial, "env": env or {}},
        scaling_config=scaling_config(trial),
        run_config=ray.train.RunConfig(
            name=context.get_trial_id(),
            storage_path=path,
            storage_filesystem=filesystem,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=0, max_preemption_failures=0),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )


def evaluation_report(trial: TrialConfig, result: ray.train.Result) -> dict[str, float]:
    """The evaluation stage's metrics for a finished Train run, at its last epoch's step."""
    metrics = run_evaluation(trial, result.checkpoint).metrics
    last = result.metrics
    metrics["data/skipped_images"] += int(last.get("pretrain/skipped_images", 0))
    metrics |= trial.method.prepare(trial)  # its data's figures (tracks/pairs, ...); cached by now
    metrics |= trial.data_figures()
    return metrics | {"epoch": int(last.get("epoch", trial.epochs - 1))}
