"""Running a sweep: validate, connect to Ray, build or restore the Tuner, track in MLflow.

`run_sweep` is the one way a sweep runs; a script in `sweeps/` only names its search
space. Everything that can be wrong with the configuration is reported before Ray
starts.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.config import ConfigError, SweepSettings, TrialConfig, advisories, check
from orchestrator.search import grid_keys, knobs, trials_of

log = logging.getLogger(__name__)

# A trial's own process only waits on its Train run and then its evaluation task
# (trainables.evaluation.run_evaluation), which hold the CPUs and memory: it reserves a
# little memory (Tune needs some resource) and no CPU, so that on a 2-CPU machine two 1-CPU
# Train workers can run side by side.
TRIAL_DRIVER_RESOURCES = {"cpu": 0, "memory": 256 * 1024**2}


@dataclass
class SweepOutcome:
    """What a finished sweep leaves: the Tune results and where they are recorded."""

    name: str
    experiment_path: str
    tracking_uri: str
    experiment: str
    parent_run_id: str
    knobs: list[str]
    rows: list[dict[str, Any]]
    errors: list[str]
    experiment_id: str = ""
    compare_url: str = ""
    runs_url: str = ""
    interrupted: bool = False  # stopped by Ctrl-C, SIGTERM or `ray job stop`: runs marked KILLED
    tracking_errors: int = 0  # MLflow writes lost after retries (the sweep went on)
    fixed: dict[str, Any] = field(default_factory=dict)  # settings every trial shares (FIXED_SHOWN)
    log_path: str = ""  # where Ray's and Tune's own output went (orchestrator.console)


# Settings named in the summary's "same in every trial" line (the rest are the runs' params).
FIXED_SHOWN = ("method", "arch", "image_size", "epochs", "batch_size", "data.pretrain")


def default_storage_path(settings: SweepSettings) -> str:
    """The user's choice; else ./ray_results locally and Ray's own default on a cluster.

    Under `ray job submit --working-dir .` the working directory is a temporary copy, so
    results there would vanish with the job.
    """
    from datasets.ray_connection import on_cluster

    if settings.storage_path:
        return settings.storage_path
    if on_cluster():
        return str(Path.home() / "ray_results")
    return str(Path("ray_results").resolve())


def _experiment_path(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}"


def _sweep_exists(path: str) -> bool:
    """Whether a sweep with results is at `path`, so that its name is taken (or it resumes).

    On object storage (``s3://``, ``gs://``, any URI pyarrow opens) a folder is no more
    than a key prefix, so the test is Tune's own: its state file is there
    (``Tuner.can_restore``). A local folder counts unless it holds only the log of a
    sweep stopped before Tune started (orchestrator.console).
    """
    from orchestrator.console import LOG_FILE

    if "://" in path:
        from ray.tune import Tuner

        from datasets.storage import storage_filesystem

        try:
            filesystem, inner = storage_filesystem(path)
            return Tuner.can_restore(inner, storage_filesystem=filesystem)
        except Exception as err:  # pyarrow's errors for an unknown scheme, bucket or credentials
            raise ConfigError(f"cannot read the storage path {path}: {err}") from err
    folder = Path(path)
    return folder.exists() and [p.name for p in folder.iterdir()] != [LOG_FILE]


def _concurrency(configs: list[TrialConfig], resources: dict[str, float], explicit: int) -> int | None:
    """How many trials may run at once.

    Tune does not see the resources of the Train workers a trial starts, so on a fixed
    cluster (a laptop) it is capped by what the workers need, to keep trials from
    starving each other. On a cluster the autoscaler grows to meet demand: no cap unless
    the user sets one.
    """
    if explicit > 0:
        return explicit
    from datasets.ray_connection import on_cluster

    if on_cluster():
        return None
    cpu_need = max(c.num_workers * c.cpus_per_worker for c in configs)
    caps = [math.floor(resources.get("CPU", 1) / cpu_need)]
    if any(c.use_gpu for c in configs):
        caps.append(math.floor(resources.get("GPU", 0) / max(c.num_workers for c in configs)))
    return max(1, min(caps))


def prepare_data(trials: list[TrialConfig]) -> dict[str, str]:
    """Resolve every trial's data roots on the driver; return them as MLflow tags.

    It calls the same `resolve` the workers call, so synthetic sets are generated here
    once, warming the head's cache and surfacing generator errors before any trial
    starts; on a multi-node cluster the trials' cache is on shared storage
    (`orchestrator.cluster.shared_data_cache`), so workers read what was built here. Then
    each method prepares its own cached data (the video methods' region features and
    tracks), so no trial runs Ray Data of its own, and its training set is built once and
    refused (ConfigError) if it cannot fill one global batch (``trainables.pretrain.train_set``).
    Before any of that, everything the evaluation will read (invariance sets, the probes'
    annotations) is parsed and checked (``trainables.evaluation.read_evaluation_data``): a
    malformed file is refused (ConfigError naming it) before the first epoch, not found
    after the last.
    """
    from datasets.errors import DatasetFormatError
    from trainables.evaluation import read_evaluation_data
    from trainables.pretrain import train_set

    roots: dict[str, str] = {}
    checked: set[str] = set()
    for trial in trials:
        for role in trial.data:
            roots[f"data.{role}"] = str(trial.root(role).resolve())
        for part in (*trial.invariances, *trial.probes):
            (role,) = part.roles
            key = repr((part, trial.data[role], trial.ris_max_objects))
            if key in checked:
                continue
            checked.add(key)
            try:
                read_evaluation_data(part, trial)
            except DatasetFormatError as err:
                raise ConfigError(f"data.{role} at {trial.root(role)}, read by {part.name}: {err}") from err
        try:
            trial.method.prepare(trial)
        except DatasetFormatError as err:  # e.g. a GOT-10k video root whose list.txt names a missing folder
            roles = ", ".join(f"data.{role} at {trial.root(role)}" for role in trial.method.roles)
            raise ConfigError(f"{roles}, read by method {trial.method.name}: {err}") from err
        # The training set against one global batch: the workers' own check, run here so
        # that a set too small is refused before any trial (once per distinct set).
        key = repr((trial.method, [trial.data[role] for role in trial.method.roles], trial.batch_size,
                    trial.data_cache, {k: v for k, v in trial.flat().items() if k.startswith("pretrain_")}))
        if key not in checked:
            checked.add(key)
            train_set(trial)
    return roots


@dataclass
class SweepPlan:
    """A sweep checked before Ray starts: its trials, the knobs that name them, and where
    its results go."""

    space: dict[str, Any]  # the search space as the sweep script wrote it
    param_space: dict[str, Any]  # Tune's nested search space
    configs: list[TrialConfig]  # every trial, typed and checked
    swept: list[str]  # the knobs that name the runs and head the tables
    storage: str  # Tune's storage path
    experiment_path: str  # the sweep's folder under it


def plan_sweep(base: TrialConfig, space: dict[str, Any], settings: SweepSettings) -> SweepPlan:
    """Type and check every trial, name the knobs, and refuse a taken name (or a resume of
    nothing): every config problem, before Ray starts."""
    param_space, configs = trials_of(base, space)
    check(configs)
    # A one-value grid varies nothing: its trial is still named by what the sweep set. A
    # study's epochs=0 rows (random initialisation, orchestrator.study) are rows beside its
    # arms: its knob, not epochs, is the x axis of the charts and the rows' first name.
    swept = sorted(knobs(configs), key=lambda k: k == "epochs") or grid_keys(space, configs[0])
    for note in dict.fromkeys(n for c in configs for n in advisories(c)):
        log.warning("%s", note)
    storage = default_storage_path(settings)
    experiment_path = _experiment_path(storage, settings.name)
    exists = _sweep_exists(experiment_path)
    if not settings.resume and exists:
        raise ConfigError(
            f"a sweep named {settings.name!r} already exists at {experiment_path}; "
            "pass --resume to continue it or choose another --name"
        )
    if settings.resume and not exists:
        raise ConfigError(f"--resume: no sweep to resume at {experiment_path}")
    return SweepPlan(space, param_space, configs, swept, storage, experiment_path)


def tracking_store(settings: SweepSettings) -> str:
    """The MLflow store's URI, warned about when a job would delete it and refused when
    its server cannot be reached (before any trial)."""
    from datasets.ray_connection import on_cluster
    from orchestrator.mlflow_server import check_tracking_uri
    from orchestrator.tracking.store import resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(settings.tracking_uri)
    if on_cluster() and not settings.tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        log.warning(
            "MLflow store %s is inside the job's working directory, which Ray deletes with "
            "the job; set MLFLOW_TRACKING_URI (e.g. --runtime-env-json "
            "'{\"env_vars\": {\"MLFLOW_TRACKING_URI\": ...}}') or pass --tracking-uri",
            tracking_uri,
        )
    check_tracking_uri(tracking_uri)
    return tracking_uri


def start_console(plan: SweepPlan, settings: SweepSettings):
    """The command line's console, if any: from here on Ray's output goes to the sweep's log."""
    from orchestrator.console import active, log_path

    console = active()
    if console is not None:
        console.start(log_path(plan.experiment_path, settings.name))
        console.write(f"Sweep {settings.name}: {len(plan.configs)} trials "
                      f"({', '.join(plan.swept) or 'one trial'}); "
                      "starting Ray and preparing data (generated once into the cache)")
    return console


def place_on_cluster(base: TrialConfig, plan: SweepPlan):
    """Start Ray and check the cluster: on several nodes, shared storage, data generated
    once on it, roots checked on every node. Returns the plan (its trials moved to the
    shared data cache where there is one), Ray's resources and the cluster's view."""
    from datasets.ray_connection import init_ray
    from orchestrator.cluster import (
        check_on_every_node,
        cluster_view,
        placement_warnings,
        shared_data_cache,
        storage_problem,
        video_cache_problem,
    )

    resources = init_ray()  # first: a method's data preparation may run Ray Data on it
    view = cluster_view()
    if (problem := storage_problem(plan.storage, view)) is not None:
        raise ConfigError(problem)
    for note in placement_warnings(view):
        log.warning("%s", note)
    cache = shared_data_cache(plan.storage, base.data_cache, view)
    if cache != base.data_cache:
        log.info("multi-node cluster: generated data goes to %s, built once by this driver", cache)
        param_space, configs = trials_of(base.override({"data_cache": cache}), plan.space)
        plan = replace(plan, param_space=param_space, configs=configs)
    if (problem := video_cache_problem(plan.configs, cache, view)) is not None:
        raise ConfigError(problem)
    if view.nodes > 1 and (problems := check_on_every_node(plan.configs)):
        raise ConfigError("invalid configuration on the cluster's nodes:\n  " + "\n  ".join(problems))
    return plan, resources, view


def start_tracking(plan: SweepPlan, settings: SweepSettings, tracking_uri: str, data_tags: dict[str, str]):
    """The sweep's parent run (its params logged once: a resume keeps the first) and the
    Tune callback that mirrors each trial into a child run."""
    from orchestrator.tracking.callback import MLflowTrialCallback
    from orchestrator.tracking.runs import SweepTracker
    from orchestrator.tracking.source import git_commit

    tags = {"sweep": settings.name, "git_commit": git_commit(), **data_tags, **settings.tags}
    tracker = SweepTracker(tracking_uri, settings.experiment, settings.name, plan.experiment_path)
    if not settings.resume:  # params are immutable in MLflow
        tracker.log_sweep(
            {"search_space": repr(plan.space), "num_trials": len(plan.configs), "storage_path": plan.storage},
            tags,
        )
    callback = MLflowTrialCallback(
        tracking_uri=tracking_uri, experiment=settings.experiment,
        sweep_name=settings.name, sweep_dir=plan.experiment_path, tags=tags, knobs=plan.swept,
        log_models=settings.log_models, registered_model_name=settings.register_model,
    )
    return tracker, callback


def build_tuner(plan: SweepPlan, settings: SweepSettings, resources: dict[str, float], view, callback):
    """The Tuner: a new one over the plan's search space, or the sweep's own, restored."""
    from ray import tune

    from datasets.ray_connection import on_cluster
    from datasets.storage import driver_env, storage_filesystem
    from orchestrator.cluster import default_max_failures, trial_driver_resources
    from orchestrator.console import SweepProgress
    from trainables.trial import pretrain_and_evaluate

    max_failures = default_max_failures(settings.max_failures, on_cluster())
    part_modules = tuple(sorted(set().union(*(c.part_modules() for c in plan.configs))))
    trainable = tune.with_resources(
        tune.with_parameters(pretrain_and_evaluate, storage_path=plan.storage, max_failures=max_failures,
                             part_modules=part_modules, env=driver_env()),
        trial_driver_resources(TRIAL_DRIVER_RESOURCES, view),
    )
    # Built on the driver, where AWS_ENDPOINT_URL is set: the endpoint travels with it to
    # Tune's trial actors, which Ray may have started without it (datasets.storage).
    filesystem, storage_in_fs = storage_filesystem(plan.storage)
    if settings.resume:
        return tune.Tuner.restore(storage_filesystem(plan.experiment_path)[1], trainable, resume_unfinished=True,
                                  resume_errored=True, storage_filesystem=filesystem)
    return tune.Tuner(
        trainable,
        param_space=plan.param_space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=_concurrency(plan.configs, resources, settings.max_concurrent_trials),
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=storage_in_fs,
            storage_filesystem=filesystem,
            callbacks=[callback, SweepProgress(len(plan.configs), plan.swept)],
            # No trial restarts here: retries happen at one level, the trial's own loop
            # around its Train run, which raises deterministic errors at once
            # (trainables.trial.fit_with_retries, where the choice is explained).
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=1,
        ),
    )


def fit(tuner, tracker):
    """`tuner.fit()` with SIGTERM turned into Tune's graceful stop; the results and whether
    a signal stopped the sweep. A second Ctrl-C marks the runs KILLED and is raised."""
    from orchestrator.tracking.interrupt import InterruptMarker

    marker = InterruptMarker(tracker)
    try:
        with marker:
            result_grid = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C: Tune stops waiting for its trials
        marker.mark()
        raise
    return result_grid, marker.signal is not None


def result_rows(result_grid, swept: list[str]) -> list[dict[str, Any]]:
    """One row per trial: its swept knobs and its metrics."""
    from orchestrator.tracking.keys import metrics_of

    rows = []
    for result in result_grid:
        flat = TrialConfig.from_nested(result.config).flat() if result.config else {}
        # A trial's last result is its evaluation; its training metrics came before it.
        history = result.metrics_dataframe
        last = history.ffill().iloc[-1].to_dict() if history is not None and len(history) else {}
        rows.append({k: flat.get(k) for k in swept} | metrics_of(last | (result.metrics or {})))
    return rows


def log_parent_summary(tracker, tracking_uri: str, swept: list[str], settings: SweepSettings,
                       started: float) -> tuple[str, str]:
    """The parent run's links, wall time, summary table, charts and tables; returns the
    links (compare page, runs table). A courtesy: failing to write it must not hide the
    sweep's results, so every write is retried and never raised."""
    from mlflow.entities import Metric, RunTag

    from orchestrator.compare import compare_url, log_sweep_view, shared_view_url, sweep_runs_url, ui_base_url
    from orchestrator.sweep_artifacts import log_parent_artifacts
    from orchestrator.tracking.keys import TAG_COMPARE_URL, TAG_KNOBS, TAG_RUNS_URL
    from orchestrator.tracking.writer import with_retries

    client = tracker.client
    children = sorted(tracker.children(), key=lambda r: r.info.run_name or "")
    base = ui_base_url(tracking_uri)
    knob = next((k for k in swept if k != "seed"), "")
    # The links open a shared view of the sweep: its trials, RIS and probe metrics as the first
    # columns and charts. Without it (the tag not written), the plain runs and compare pages.
    shared, key = with_retries("the sweep's MLflow view", lambda: log_sweep_view(
        client, tracker.experiment_id, tracker.parent_run_id, knob,
        {k for r in children for k in r.data.metrics}), (2.0,))
    if shared:
        runs_url = shared_view_url(base, tracker.experiment_id, key, "TABLE")
        url = shared_view_url(base, tracker.experiment_id, key, "CHART")
    else:
        runs_url = sweep_runs_url(base, tracker.experiment_id, tracker.parent_run_id, knob)
        url = compare_url(base, tracker.experiment_id, [r.info.run_id for r in children])
    with_retries("the parent run's links and wall time", lambda: client.log_batch(
        tracker.parent_run_id,
        metrics=[Metric("sweep/wall_seconds", time.time() - started, int(time.time() * 1000), 0)],
        tags=[RunTag(TAG_COMPARE_URL, url), RunTag(TAG_RUNS_URL, runs_url),
              RunTag(TAG_KNOBS, ",".join(swept))]), (2.0,))
    with_retries("the parent run's summary table, charts and tables",
                 lambda: log_parent_artifacts(client, tracker.parent_run_id, children, swept,
                                              settings.tables), (2.0,))
    return url, runs_url


def run_sweep(base: TrialConfig, space: dict[str, Any], settings: SweepSettings) -> SweepOutcome:
    """Run (or resume) one sweep: the search `space` (orchestrator.search) laid over `base`.

    The steps, in order: plan (every config problem before Ray starts), the tracking store,
    the console, Ray and the cluster, the data (prepared once on the driver), the parent
    run and its callback, the Tuner, the fit, then the rows and the parent's summary.
    """
    from orchestrator.tracking.keys import TAG_TRACKING_ERRORS
    from orchestrator.tracking.writer import with_retries

    plan = plan_sweep(base, space, settings)
    tracking_uri = tracking_store(settings)
    console = start_console(plan, settings)
    plan, resources, view = place_on_cluster(base, plan)
    data_tags = prepare_data(plan.configs)
    tracker, callback = start_tracking(plan, settings, tracking_uri, data_tags)
    tuner = build_tuner(plan, settings, resources, view, callback)
    started = time.time()
    result_grid, signalled = fit(tuner, tracker)
    rows = result_rows(result_grid, plan.swept)
    errors = [f"{result.path}: {result.error}" for result in result_grid if result.error]
    # A trial that neither finished (Tune's last result says done) nor failed was stopped.
    interrupted = signalled or any(
        not result.error and not (result.metrics or {}).get("done") for result in result_grid)
    if interrupted:  # first: the process may be killed soon (ray job stop)
        with_retries("marking the sweep KILLED", tracker.mark_killed, (1.0,))
    url, runs_url = log_parent_summary(tracker, tracking_uri, plan.swept, settings, started)
    if not interrupted:
        tracker.finish("FAILED" if errors else "FINISHED")
    lost = tracker.client.get_run(tracker.parent_run_id).data.tags.get(TAG_TRACKING_ERRORS, "0")
    return SweepOutcome(
        name=settings.name, experiment_path=plan.experiment_path, tracking_uri=tracking_uri,
        experiment=settings.experiment, parent_run_id=tracker.parent_run_id,
        knobs=plan.swept, rows=rows, errors=errors, experiment_id=tracker.experiment_id,
        compare_url=url, runs_url=runs_url, interrupted=interrupted, tracking_errors=int(lost),
        fixed={k: v for k, v in plan.configs[0].flat().items() if k in FIXED_SHOWN and k not in plan.swept},
        log_path=str(console.path) if console is not None and console.path else "",
    )


def default_sweep_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
