"""What a sweep's parent run shows a reader: the summary table, one chart per metric
family against the swept knob, and the best trial's metrics.

Read back from the child runs in the store (not from Tune's results), so a resumed sweep's
parent shows every trial, whichever process ran it.
"""
from __future__ import annotations

import io
import logging
import math
import time
from collections import defaultdict
from typing import Any

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from orchestrator.paper_tables import TABLE1
from orchestrator.rows import summary_rows
from orchestrator.tables import TAG_TABLES, build_all

log = logging.getLogger(__name__)

SEED = "seed"
TAG_BEST_RUN = "dssl.best_run_id"
TAG_BEST_BY = "dssl.best_by"


def metric_family(key: str) -> str:
    """`ris/viewpoint/top10` -> `ris/viewpoint` (top10 and top25 share a chart); else the key."""
    parts = key.split("/")
    return "/".join(parts[:2]) if parts[0] == "ris" and len(parts) > 2 else key


def chart_families(rows: list[dict[str, Any]], prefixes: tuple[str, ...]) -> dict[str, list[str]]:
    """The metrics under `prefixes` (the tables' families and the loss), by chart."""
    keys = sorted({k for row in rows for k in row if isinstance(k, str) and k.startswith(prefixes)})
    families: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        families[metric_family(key)].append(key)
    return dict(families)


def x_knob(knobs: list[str]) -> str | None:
    """The knob on the x axis: the first swept one that is not the seed (seeds are repeats)."""
    others = [k for k in knobs if k != SEED]
    return others[0] if others else (knobs[0] if knobs else None)


def family_figure(rows: list[dict[str, Any]], knobs: list[str], family: str, keys: list[str]):
    """One metric family against the x knob: a point per trial (marker per seed), a line through
    the mean over seeds, one series per metric and combination of the other knobs."""
    from matplotlib.figure import Figure

    x_key = x_knob(knobs)
    xs = [row.get(x_key) for row in rows]
    numeric = all(isinstance(x, (int, float)) for x in xs)
    categories = sorted({str(x) for x in xs})
    position = (lambda x: float(x)) if numeric else (lambda x: categories.index(str(x)))  # noqa: E731
    rest = [k for k in knobs if k not in (x_key, SEED)]
    seeds = sorted({row.get(SEED, 0) for row in rows}, key=str)
    markers = "osD^vP*X"

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axes = figure.add_subplot()
    for key in keys:
        series: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if isinstance(row.get(key), (int, float)) and math.isfinite(row[key]):
                series[tuple(row.get(k) for k in rest)].append(row)
        for other, members in sorted(series.items(), key=lambda item: str(item[0])):
            label = key.split("/")[-1] if len(keys) > 1 else key
            label += "".join(f", {k}={v}" for k, v in zip(rest, other))
            by_x: dict[float, list[float]] = defaultdict(list)
            for row in members:
                by_x[position(row.get(x_key))].append(row[key])
            line_x = sorted(by_x)
            (line,) = axes.plot(line_x, [sum(by_x[x]) / len(by_x[x]) for x in line_x], label=f"{label} (mean)")
            for i, seed in enumerate(seeds):
                points = [row for row in members if row.get(SEED, 0) == seed]
                axes.scatter([position(r.get(x_key)) for r in points], [r[key] for r in points],
                             color=line.get_color(), marker=markers[i % len(markers)], alpha=0.7,
                             label=f"seed {seed}" if len(seeds) > 1 and key == keys[0] and not rest else None)
    if not numeric:
        axes.set_xticks(range(len(categories)), categories)
    axes.set_xlabel(x_key or "trial")
    axes.set_ylabel(family + (" (%)" if family.startswith("ris/") else ""))
    axes.set_title(f"{family} vs {x_key}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return figure


def best_row(rows: list[dict[str, Any]], best_by: tuple[str, ...]) -> tuple[str, dict[str, Any]] | None:
    for key in best_by:
        scored = [row for row in rows if isinstance(row.get(key), float) and math.isfinite(row[key])]
        if scored:
            return key, max(scored, key=lambda row: row[key])
    return None


def log_parent_artifacts(client: MlflowClient, parent_run_id: str, children, knobs: list[str],
                         tables=(TABLE1,)) -> None:
    """Summary table (MLflow table and CSV), a chart per metric family against the knob, the
    sweep's `tables` (orchestrator.tables, their names as tag `dssl.tables`) and the best
    trial's metrics (by the first table's `best_by`) on the parent."""
    import pandas as pd

    rows = summary_rows(children, knobs)
    if not rows:
        return
    frame = pd.DataFrame(rows)
    client.log_table(parent_run_id, data=frame, artifact_file="summary/trials.json")
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    client.log_text(parent_run_id, buffer.getvalue(), "summary/trials.csv")
    families = tuple(dict.fromkeys(f for spec in tables for f in spec.families))
    if knobs:
        for family, keys in chart_families(rows, families + ("pretrain/loss",)).items():
            figure = family_figure(rows, knobs, family, keys)
            client.log_figure(parent_run_id, figure, f"charts/{family.replace('/', '_')}.png")
    for table in build_all(tables, rows, knobs):
        table.log(client, parent_run_id)
    client.set_tag(parent_run_id, TAG_TABLES, ",".join(spec.name for spec in tables))
    best_by = next((spec.best_by for spec in tables if spec.best_by), ())
    best = best_row(rows, best_by)
    if best:
        key, row = best
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in row.items()
                   if isinstance(k, str) and k.startswith(families + ("pretrain/",))
                   and isinstance(v, float)]
        client.log_batch(parent_run_id, metrics=metrics,
                         tags=[RunTag(TAG_BEST_RUN, row["run_id"]), RunTag(TAG_BEST_BY, key),
                               RunTag("dssl.best_run", str(row["run"]))])
