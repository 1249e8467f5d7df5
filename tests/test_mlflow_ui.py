"""MLflow as its users see it, over the store of ONE tiny sweep (module fixture): the UI in a
headless browser, the parent's table and charts, each trial's logged model and datasets,
an MLflow hiccup during the sweep; and a sweep stopped by SIGTERM. The sweep is the
session's shared one (`crop_sweep`, tests/conftest.py; tests/test_sweep.py reads its
trials)."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator import compare
from orchestrator.cli import EXIT_INTERRUPTED, run_cli
from orchestrator.mlflow_server import JOB_EXECUTION_ENV_VAR
from orchestrator.tracking.dataset_inputs import listing_digest
from orchestrator.tracking.keys import (
    TAG_CHECKPOINT,
    TAG_COMPARE_URL,
    TAG_MODEL_URI,
    TAG_PARENT,
    TAG_RUNS_URL,
)
from tests.conftest import CROP_SWEEP_FACTORS, CROP_SWEEP_MINS, CROP_SWEEP_RIS_KEYS
from tests.tiny import tiny_config, tiny_overrides
from trainables.evaluation import load_backbone
from trainables.pretrain import CHECKPOINT_FILE

pytestmark = pytest.mark.slow

FACTORS, RIS_KEYS, CROP_MINS = CROP_SWEEP_FACTORS, CROP_SWEEP_RIS_KEYS, CROP_SWEEP_MINS


@pytest.fixture(scope="module")
def tiny_sweep(crop_sweep):
    """The session's two-trial sweep (tests/conftest.py), through an MLflow hiccup per
    trial; these tests read the finished store."""
    return crop_sweep


def test_an_mlflow_hiccup_is_retried_and_every_metric_is_logged_once(tiny_sweep):
    outcome, client, children = tiny_sweep.outcome, tiny_sweep.client, tiny_sweep.children
    assert outcome.errors == [] and not outcome.interrupted and outcome.tracking_errors == 0
    assert sorted(tiny_sweep.hiccups) == sorted(r.info.run_id for r in children)  # each child hit once
    for run in children:
        assert run.info.status == "FINISHED"
        for key in RIS_KEYS + ["probe/linear_top1"]:
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1], key
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "pretrain/loss")) == [0, 1]


def test_the_parent_run_has_the_table_the_charts_and_the_best_trial(tiny_sweep):
    outcome, client, children = tiny_sweep.outcome, tiny_sweep.client, tiny_sweep.children
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.status == "FINISHED"
    files = {f.path for folder in ("summary", "charts", "tables")
             for f in client.list_artifacts(parent.info.run_id, folder)}
    assert {"summary/trials.csv", "summary/trials.json", "charts/ris_viewpoint.png",
            "charts/ris_illumination_direction.png", "charts/ris_illumination_color.png",
            "charts/probe_linear_top1.png", "tables/ris_table.md", "tables/ris_table.csv",
            "tables/ris_viewpoint.png"} <= files
    table = Path(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="tables/ris_table.md",
                                                     tracking_uri=tiny_sweep.uri)).read_text()
    for crop_min, run in zip(CROP_MINS, children):  # one row per crop range, seeds averaged
        row = next(line for line in table.splitlines() if line.startswith(f"| crop_min={crop_min} |"))
        assert f"{run.data.metrics['ris/viewpoint/top10']:.2f} / {run.data.metrics['ris/viewpoint/top25']:.2f}" in row
    assert "| paper: MoCo v2 (ImageNet) |" in table
    assert parent.data.tags["dssl.knobs"] == "method.crop_scale_min"
    csv = Path(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="summary/trials.csv",
                                                   tracking_uri=tiny_sweep.uri)).read_text()
    assert csv.splitlines()[0].startswith("run,run_id,status,method.crop_scale_min,")
    assert [line.split(",")[0] for line in csv.splitlines()[1:]] == [r.info.run_name for r in children]
    best = max(children, key=lambda r: r.data.metrics["probe/linear_top1"])
    assert parent.data.tags["dssl.best_run_id"] == best.info.run_id
    for key in RIS_KEYS + ["probe/linear_top1"]:
        assert parent.data.metrics[key] == best.data.metrics[key]
    assert parent.data.tags[TAG_COMPARE_URL] == outcome.compare_url
    assert parent.data.tags[TAG_RUNS_URL] == outcome.runs_url
    # Both links open the sweep's shared view, stored on the experiment, of its trials only.
    key = compare.share_key(parent.info.run_id)
    assert outcome.runs_url.endswith(f"viewStateShareKey={key}&compareRunsMode=TABLE")
    assert outcome.compare_url.endswith(f"viewStateShareKey={key}&compareRunsMode=CHART")
    view = json.loads(client.get_experiment(parent.info.experiment_id).tags[f"mlflow.sharedViewState.{key}"])
    assert view["searchFilter"] == f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    assert view["orderByKey"] == "params.`method.crop_scale_min`"
    # The trials' data figures are tags, not metrics: no chart of equal counts.
    for run in children:
        assert not [k for k in run.data.metrics if k.startswith("data/")]
        assert run.data.tags["data/skipped_images"] == "0" and run.data.tags["data/ris_targets/viewpoint"]


def test_each_trial_logs_its_backbone_as_a_model_that_loads_back(tiny_sweep, data_cache):
    client, children = tiny_sweep.client, tiny_sweep.children
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tiny_sweep.uri)
    try:
        for run in children:
            model_uri = run.data.tags[TAG_MODEL_URI]
            logged = client.get_logged_model(model_uri.removeprefix("models:/"))
            assert logged.source_run_id == run.info.run_id
            assert logged.experiment_id == run.info.experiment_id  # not the Default experiment
            assert logged.artifact_location.startswith((tiny_sweep.root / "mlartifacts").as_uri())
            loaded = mlflow.pytorch.load_model(model_uri)  # pt2: torch.export's module, already in eval mode
            trial = tiny_config(data_cache).override(
                {"method.crop_scale_min": float(run.data.params["method.crop_scale_min"])})
            checkpoint = Path(run.data.tags[TAG_CHECKPOINT]) / CHECKPOINT_FILE
            assert checkpoint.name == CHECKPOINT_FILE and "checkpoint_epoch_0001" in str(checkpoint)
            with torch.no_grad():
                expected = load_backbone(trial, checkpoint)(images)
                assert torch.allclose(loaded(images), expected, atol=1e-6)
        assert not torch.allclose(*(mlflow.pytorch.load_model(r.data.tags[TAG_MODEL_URI])(images)
                                    for r in children)), "two trials, two different backbones"
    finally:
        mlflow.set_tracking_uri(previous)


def test_each_trial_lists_the_datasets_it_read(tiny_sweep):
    for run in tiny_sweep.children:
        inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
        assert set(inputs) == {"pretrain:synthetic-objects", "probe:synthetic-objects", "aloi:synthetic-aloi"}
        for name, item in inputs.items():
            role = name.split(":")[0]
            root = run.data.tags[f"data.{role}"]
            assert item.dataset.digest == listing_digest.__wrapped__(root)[0]
            assert root in item.dataset.source
            context = {t.value for t in item.tags if t.key == "mlflow.data.context"}
            assert context == ({"training"} if role == "pretrain" else {"evaluation"})


# --- The UI in a browser --------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("DSSL_REQUIRE_BROWSER"):  # CI (.ci/run) installs it
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


@pytest.fixture(scope="module")
def mlflow_ui(tiny_sweep):
    """`mlflow ui` on a free loopback port over the tiny sweep's store."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", tiny_sweep.uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env=os.environ | {JOB_EXECUTION_ENV_VAR: "false"},  # as the project's server (orchestrator.mlflow_server)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.time() + 180  # a guard against a hung start, not a measurement
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow ui did not start: {server.stdout.read() if server.poll() is not None else ''}")
            time.sleep(1)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def rendered_text(url: str, scratch: Path) -> str:
    """The page's text after headless Chromium ran its scripts (tags stripped)."""
    dom = subprocess.run(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         # A tall window: the chart view draws only the charts in sight.
         f"--user-data-dir={scratch}", "--window-size=1600,4000", "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    ).stdout
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " | ", dom)))


def rendered_when(url: str, scratch: Path, ready, tries: int = 5) -> str:
    """`rendered_text`, loaded again (up to `tries` times) until `ready(text)`: the chart view
    loads its charts after the page, late on a loaded machine. The last text either way."""
    for attempt in range(tries):
        text = rendered_text(url, scratch / str(attempt))
        if ready(text):
            break
    return text


def with_base(url: str, base: str) -> str:
    return re.sub(r"^http://127\.0\.0\.1:\d+", base, url)


METRIC_KEY = re.compile(r"\b(?:ris|probe|pretrain|data|tracks)/[a-z0-9_/]+")


def test_the_ui_opens_on_training_runs_and_compares_the_trials(tiny_sweep, mlflow_ui, tmp_path):
    outcome, children = tiny_sweep.outcome, tiny_sweep.children
    names = [f"crop_min={v}" for v in CROP_MINS]  # the knob's value within the Run Name column's width
    assert [r.info.run_name for r in children] == names

    trials = rendered_text(with_base(outcome.runs_url, mlflow_ui), tmp_path / "runs")
    assert "Runs - Experiment" in trials, trials[:600]  # the training-runs view, not the GenAI overview
    assert "Model registry" in trials and "Observability" not in trials, trials[:600]
    assert "You're viewing a shared view" in trials, trials[:2000]  # the sweep's view, as stored
    assert re.search(r"\b2 \| matching runs", trials), trials[:2000]  # the two trials, no collapsed parent
    rows = [name for name in re.findall(r"crop_min=[0-9.]+", trials)]
    assert rows[:2] == names, rows  # each trial's knob value in its row, in the knob's order
    assert "pretrain:synthetic-objects" in trials  # the Datasets column
    columns = list(dict.fromkeys(METRIC_KEY.findall(trials)))
    assert columns and all(k.startswith(("ris/", "probe/")) for k in columns), columns  # metric columns

    # The chart view of the sweep: RIS and probe charts first, training last, no data counts.
    def charts_in(text: str) -> list[str]:  # chart titles (and legends) below the runs list, in order
        return list(dict.fromkeys(METRIC_KEY.findall(text.partition("matching runs")[2])))

    charts = rendered_when(with_base(outcome.compare_url, mlflow_ui), tmp_path / "charts",
                           lambda text: "probe/linear_top1" in charts_in(text))
    assert "You're viewing a shared view" in charts, charts[:2000]
    shown = charts_in(charts)
    assert shown[:len(RIS_KEYS)] == [f"ris/{f}/top{k}" for f in FACTORS for k in (10, 25)], shown
    assert shown[len(RIS_KEYS)] == "probe/linear_top1", shown
    assert "pretrain/loss" in shown and not [k for k in shown if k.startswith("data/")], shown

    # MLflow's own compare page (`python -m orchestrator.compare`) still compares the trials.
    page = compare.compare_url(mlflow_ui, children[0].info.experiment_id, [r.info.run_id for r in children])
    compared = rendered_text(page, tmp_path / "compare")
    assert "Comparing 2 Runs from 1 Experiment" in compared, compared[:600]
    for name in names:
        assert name in compared
    for key in RIS_KEYS + ["probe/linear_top1"]:
        assert key in compared, key


# --- Interrupted sweeps -----------------------------------------------------------------------

def release_interrupted_training(ray) -> None:
    """Give the shared test cluster its CPUs back after an interrupted in-process sweep.

    A real interrupted driver exits, its Ray job ends and Ray frees what the job owned.
    Here the driver is the test session, which keeps running: the interrupted trial's Train
    placement group would hold a CPU for the rest of the session (no trial runs now, so
    every placement group left is the interrupted one's).
    """
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    for pg_id, info in ray.util.placement_group_table().items():
        if info["state"] == "CREATED":
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))
    deadline = time.time() + 60
    while time.time() < deadline and ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        time.sleep(1)


def test_sigterm_marks_the_parent_and_the_running_trial_killed_and_exits_non_zero(ray_session, data_cache,
                                                                                   tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["--crop-scale-mins", "0.5", "--name", "stopped", "--storage-path", str(tmp_path / "results"),
            "--tracking-uri", uri, "--experiment", "stopped", "-q", "--no-log-models",
            *(arg for item in tiny_overrides(data_cache) for arg in ("--set", item)), "--set", "epochs=40"]
    sent = threading.Event()

    def stop_when_training():
        """SIGTERM to this process (the sweep's driver) once the trial has reported an epoch."""
        client = MlflowClient(uri)
        while not sent.is_set():
            try:
                experiment = client.get_experiment_by_name("stopped")
                runs = client.search_runs([experiment.experiment_id]) if experiment else []
            except MlflowException:
                runs = []  # the store is being created
            if any(TAG_PARENT in r.data.tags and r.info.status == "RUNNING" and "pretrain/loss" in r.data.metrics
                   for r in runs):
                os.kill(os.getpid(), signal.SIGTERM)
                sent.set()
            time.sleep(0.5)

    from sweeps.crop_scale import options, search_space

    watcher = threading.Thread(target=stop_when_training, daemon=True)
    watcher.start()
    try:
        status = run_cli("crop_scale", "test", options, search_space, argv=args)
    finally:
        sent.set()
        watcher.join()
        release_interrupted_training(ray_session)
    assert status == EXIT_INTERRUPTED
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("stopped").experiment_id])
    parent = [r for r in runs if TAG_PARENT not in r.data.tags]
    children = [r for r in runs if TAG_PARENT in r.data.tags]
    assert [r.info.status for r in parent] == ["KILLED"]
    assert [r.info.status for r in children] == ["KILLED"]
    assert len(client.get_metric_history(children[0].info.run_id, "pretrain/loss")) < 40
