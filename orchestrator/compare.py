"""The comparison of a sweep's trials, one step away: the URL of MLflow's compare-runs page.

    python -m orchestrator.compare <sweep name or parent run id> [--open]
        [--tracking-uri URI] [--port 5000]

With an http(s) tracking URI the URL is the server's; with a local store (SQLite) it is
the `mlflow ui` this prints the command for (on 127.0.0.1:--port). A sweep prints the same
URL when it ends and keeps it as its parent run's `dssl.compare_url` tag.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import sys
import webbrowser
from urllib.parse import quote

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from orchestrator.tracking.keys import TAG_PARENT, TAG_SWEEP
from orchestrator.tracking.store import resolve_tracking_uri

DEFAULT_UI_PORT = 5000
# MLflow 3.17's UI chooses between its GenAI and model-training navigation by this URL
# parameter (else the user's last choice, GenAI at first), ahead of the experiment's
# `mlflow.experimentKind` tag: the links printed here carry it so they open on runs.
TRAINING_VIEW = "workflowType=machine_learning"
RUN_ID = re.compile(r"[0-9a-f]{32}")
# MLflow's UI opens a view shared by link (`?viewStateShareKey=<key>`) from the experiment
# tag `mlflow.sharedViewState.<key>`: its search (filter, order), columns and charts, as its
# Share button stores them (mlflow/server/js: useSharedExperimentViewState).
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
SHARED_VIEW_PARAM = "viewStateShareKey"
VIEW_MODE_PARAM = "compareRunsMode"  # TABLE: the runs table; CHART: the chart view beside it
# The order a sweep's charts and columns lead with: the science first, training last.
LEADING_PREFIXES = ("ris/", "probe/", "tracks/", "pretrain/")


class SweepNotFound(LookupError):
    pass


def is_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def ui_base_url(tracking_uri: str, port: int = DEFAULT_UI_PORT) -> str:
    """The UI's address: the tracking server itself, or a local `mlflow ui` on loopback."""
    return tracking_uri.rstrip("/") if is_server(tracking_uri) else f"http://127.0.0.1:{port}"


def ui_command(tracking_uri: str, port: int = DEFAULT_UI_PORT) -> str:
    """The command serving a local store's UI (a server needs none: `ui_base_url` is it)."""
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --host 127.0.0.1 --port {port}"


def experiment_url(base: str, experiment_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"


def sweep_runs_url(base: str, experiment_id: str, parent_run_id: str, order_by_param: str = "") -> str:
    """The runs table showing one sweep's trials, flat, sorted by the swept knob.

    The UI nests child runs under a collapsed parent unless the table is filtered and sorted
    by something other than the start time, so this filters on the parent and sorts by
    the knob (else by name).
    """
    search = quote(f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    order = quote(f"params.`{order_by_param}`" if order_by_param else "attributes.run_name")
    return (f"{experiment_url(base, experiment_id)}&searchFilter={search}"
            f"&orderByKey={order}&orderByAsc=true")


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare-runs page (its route: `/compare-runs?runs=[..]&experiments=[..]`)."""
    runs = quote(json.dumps(list(run_ids), separators=(",", ":")))
    experiments = quote(json.dumps([experiment_id], separators=(",", ":")))
    return f"{base}/#/compare-runs?runs={runs}&experiments={experiments}&{TRAINING_VIEW}"


def _metric_order(keys) -> list[str]:
    """RIS in the paper's invariance order (top-10 before top-25), then probes, tracks, training."""
    from datasets.invariance_sets import INVARIANCES

    def rank(key: str) -> tuple:
        prefix = next((i for i, p in enumerate(LEADING_PREFIXES) if key.startswith(p)), len(LEADING_PREFIXES))
        parts = key.split("/")
        invariance = INVARIANCES.index(parts[1]) if prefix == 0 and len(parts) > 2 and parts[1] in INVARIANCES \
            else len(INVARIANCES)
        return prefix, invariance, key
    return sorted(set(keys), key=rank)


def _section(key: str) -> str:
    """MLflow's chart section of a metric: its name up to the first `/` (as the UI groups them)."""
    return key.split("/", 1)[0] if "/" in key else "Model metrics"


def sweep_view_state(parent_run_id: str, order_by_param: str, metric_keys, stepped=("pretrain/loss",)) -> dict:
    """The UI state of a sweep's view: its trials only, sorted by the knob, the RIS and probe
    metrics as the first columns and the first charts (one chart per metric, in the order of
    `_metric_order`; `stepped` ones as lines over epochs, the rest as bars per trial)."""
    keys = _metric_order(metric_keys)
    sections = list(dict.fromkeys([_section(k) for k in keys] + ["Model metrics", "System metrics"]))
    section_ids = {name: f"dssl-{i}" for i, name in enumerate(sections)}
    charts = []
    for key in keys:
        chart = {"uuid": f"dssl-{key}", "type": "BAR", "runsCountToCompare": 100,
                 "metricSectionId": section_ids[_section(key)], "deleted": False, "isGenerated": True,
                 "displayName": key, "metricKey": key}
        if key in stepped:
            chart |= {"type": "LINE", "selectedMetricKeys": [key], "lineSmoothness": 0, "xAxisKey": "step",
                      "xAxisScaleType": "linear", "scaleType": "linear", "range": {}, "selectedXAxisMetricKey": "",
                      "yAxisKey": "metric", "yAxisExpressions": [], "ignoreOutliers": False,
                      "useGlobalXaxisKey": True}
        charts.append(chart)
    leading = [k for k in keys if k.startswith(LEADING_PREFIXES[:2]) and not k.endswith("/top25")]
    return {
        "searchFilter": f"tags.`{TAG_PARENT}` = '{parent_run_id}'",
        "orderByKey": f"params.`{order_by_param}`" if order_by_param else "attributes.run_name",
        "orderByAsc": True,
        "selectedColumns": [f"metrics.`{k}`" for k in leading] + ["attributes.`Dataset`"],
        "compareRunCharts": charts,
        "compareRunSections": [{"uuid": section_ids[name], "name": name, "display": True, "isReordered": True,
                                "deleted": False, "isGenerated": True} for name in sections],
        # Kept in this order: metrics that arrive later join their section, none moves ahead.
        "isAccordionReordered": True,
        "hideEmptyCharts": True,
    }


def share_key(parent_run_id: str) -> str:
    return hashlib.sha256(f"dssl-sweep-view:{parent_run_id}".encode()).hexdigest()[:32]


def log_sweep_view(client: MlflowClient, experiment_id: str, parent_run_id: str, order_by_param: str,
                   metric_keys) -> str:
    """Store a sweep's view as a shared view of its experiment; return its key."""
    key = share_key(parent_run_id)
    state = sweep_view_state(parent_run_id, order_by_param, metric_keys)
    client.set_experiment_tag(experiment_id, f"{SHARED_VIEW_TAG_PREFIX}{key}", json.dumps(state, separators=(",", ":")))
    return key


def shared_view_url(base: str, experiment_id: str, key: str, mode: str = "TABLE") -> str:
    """The experiment page on a shared view, as its runs table (TABLE) or its charts (CHART)."""
    return f"{experiment_url(base, experiment_id)}&{SHARED_VIEW_PARAM}={key}&{VIEW_MODE_PARAM}={mode}"


def find_parent(client: MlflowClient, sweep: str):
    """A sweep's parent run, by its run id or (the most recent) by its sweep name."""
    if RUN_ID.fullmatch(sweep):
        try:
            run = client.get_run(sweep)
        except MlflowException:
            raise SweepNotFound(f"no run {sweep} in this MLflow store") from None
        if TAG_PARENT in run.data.tags:
            raise SweepNotFound(f"run {sweep} is a trial (child run); give its sweep's parent run "
                                f"{run.data.tags[TAG_PARENT]} or the sweep name")
        return run
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = [r for r in client.search_runs(experiments, filter_string=f"tags.`{TAG_SWEEP}` = '{sweep}'",
                                          order_by=["attributes.start_time DESC"], max_results=1000)
            if TAG_PARENT not in r.data.tags]
    if not runs:
        raise SweepNotFound(f"no sweep named {sweep!r} in this MLflow store")
    return runs[0]


def child_run_ids(client: MlflowClient, parent) -> list[str]:
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`{TAG_PARENT}` = '{parent.info.run_id}'",
                              order_by=["attributes.run_name ASC"], max_results=10000)
    return [r.info.run_id for r in runs]


def sweep_compare_url(client: MlflowClient, tracking_uri: str, sweep: str, port: int = DEFAULT_UI_PORT) -> str:
    parent = find_parent(client, sweep)
    children = child_run_ids(client, parent)
    if not children:
        raise SweepNotFound(f"sweep {sweep!r} (parent run {parent.info.run_id}) has no trial runs yet")
    return compare_url(ui_base_url(tracking_uri, port), parent.info.experiment_id, children)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="sweep name (--name of the sweep) or its parent run id")
    parser.add_argument("--tracking-uri", default="",
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--port", type=int, default=DEFAULT_UI_PORT,
                        help="port of the local `mlflow ui` (local stores only; default: %(default)s)")
    parser.add_argument("--open", action="store_true", help="open the page in a web browser")
    args = parser.parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///"):]):
        print(f"error: no MLflow store at {uri}; pass --tracking-uri", file=sys.stderr)
        return 2
    try:
        url = sweep_compare_url(MlflowClient(uri), uri, args.sweep, args.port)
    except SweepNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not is_server(uri):
        print(f"Serve the UI first:  {ui_command(uri, args.port)}")
    print(url)
    if args.open:
        webbrowser.open(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
