"""The paper's RIS tables for a finished sweep or any list of runs, the published rows beside them.

Table 1 (image models) and Table 4 (video models) share one layout: a row per model, a
column per invariance, Top-10 / Top-25 RIS in percent. Here a row is one combination of a
sweep's knobs, its seeds averaged (mean ± sample standard deviation, seed count shown);
the paper's rows follow, for orientation only (scores compare only at equal target
counts: see the comparability line). Written as Markdown, as CSV (one line per row and
invariance) and as one bar chart per invariance; a sweep logs them on its parent run
under `tables/`, and this command writes them for any sweep or runs afterwards:

    python -m orchestrator.tables crop_scale-20261128-101500-42        # a sweep, by name
    python -m orchestrator.tables 3f2a...c9 --out tables/              # its parent run id
    python -m orchestrator.tables --runs 81ab... 77cd... --paper table4  # any runs
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets.invariance_sets import INVARIANCES
from orchestrator.rows import Interval, group_over_seeds, summary_rows

TOPS = ("top10", "top25")
PROBE_PREFIX = "probe/"
# Column heads that fit a 100-column terminal; the Markdown keeps the full names.
SHORT_INVARIANCES = {"occlusion": "occlusion", "viewpoint": "viewpoint", "illumination_direction": "illum dir",
                     "illumination_color": "illum col", "instance": "instance", "instance_viewpoint": "inst+view"}
SHORT_PROBES = {"probe/linear_top1": "linear", "probe/voc07_map": "voc07", "probe/voc07_boxes_map": "boxes",
                "probe/voc07_pair_map": "xor", "probe/seg_miou": "seg miou", "probe/seg_pixel_acc": "seg acc"}
TERMINAL_WIDTH = 100
# Targets the paper's RIS averages over (Sec. 3.2): ALOI's 1,000 objects.
PAPER_ALOI_OBJECTS = 1000
TARGETS_PREFIX = "data/ris_targets/"
DATA_PREFIX = "data/"

# Purushwalkam & Gupta (2020), RIS %, (top10, top25) in the order of INVARIANCES
# (occlusion, viewpoint, illumination_direction, illumination_color, instance,
# instance_viewpoint). ResNet-50 throughout. Printed beside results, never used as targets.
PAPER_TABLES: dict[str, dict[str, tuple[tuple[float, float], ...]]] = {
    "table1": {  # ImageNet-trained models
        "paper: supervised R50 (ImageNet)": ((80.89, 74.21), (89.54, 82.62), (94.63, 89.08),
                                             (99.88, 99.38), (66.11, 59.44), (70.17, 63.47)),
        "paper: MoCo v2 (ImageNet)": ((84.19, 77.88), (85.15, 75.08), (90.28, 80.76),
                                      (99.66, 97.11), (62.49, 55.01), (67.40, 60.52)),
        "paper: PIRL (ImageNet)": ((84.46, 78.38), (85.80, 76.08), (87.70, 78.45),
                                   (99.68, 97.19), (52.97, 46.79), (57.01, 51.03)),
    },
    "table4": {  # video models, pretrained on TrackingNet
        "paper: baseline MoCo v2 on frames": ((81.73, 75.35), (81.55, 71.71), (82.19, 72.45),
                                              (98.78, 93.58), (43.76, 40.43), (48.85, 45.76)),
        "paper: Frame Temporal Invariance": ((79.92, 73.33), (83.87, 74.86), (84.47, 75.57),
                                             (99.18, 96.03), (42.98, 39.42), (47.81, 44.26)),
        "paper: ground-truth tracks": ((81.52, 74.60), (84.82, 75.30), (88.28, 78.51),
                                       (99.92, 98.31), (47.51, 42.93), (53.47, 48.63)),
        "paper: Region Tracker": ((83.26, 76.52), (84.97, 76.18), (88.30, 79.34),
                                  (99.77, 97.70), (48.81, 44.38), (53.31, 49.04)),
        "paper: ImageNet 10% MoCo v2": ((84.00, 78.26), (80.42, 70.42), (81.90, 72.27),
                                        (98.29, 92.71), (46.23, 42.65), (48.54, 45.46)),
        "paper: ImageNet MoCo v2": ((84.19, 77.88), (85.15, 75.08), (90.28, 80.76),
                                    (99.66, 97.11), (62.49, 55.01), (67.40, 60.52)),
    },
}


def ris_key(invariance: str, top: str) -> str:
    return f"ris/{invariance}/{top}"


def comparability(rows: list[dict[str, Any]]) -> str:
    """The targets each invariance was scored over here, and whether the paper's figures compare."""
    counts: dict[str, set] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith(TARGETS_PREFIX) and value is not None:
                counts.setdefault(key[len(TARGETS_PREFIX):], set()).add(int(value))
    if not counts:
        return ""
    here = ", ".join(f"{name} {'/'.join(map(str, sorted(n)))}" for name, n in sorted(counts.items()))
    return (f"Targets scored here: {here}. The paper's ALOI scores average over "
            f"{PAPER_ALOI_OBJECTS:,} objects; RIS is comparable only at equal target counts "
            "(each target's share P(y) sets its firing threshold), so read the paper's figures "
            "for orientation, not as a target.")


def data_figures(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The `data/*` figures equal in every run (said once, above a table), and the keys that differ."""
    # Target counts are said by the comparability line, with what they mean.
    keys = sorted({k for row in rows for k in row if isinstance(k, str) and k.startswith(DATA_PREFIX)
                   and not k.startswith(TARGETS_PREFIX)})
    same, differ = {}, []
    for key in keys:
        values = {repr(row.get(key)) for row in rows}
        if len(values) == 1:
            same[key] = rows[0].get(key)
        else:
            differ.append(key)
    return same, differ


def data_line(rows: list[dict[str, Any]]) -> str:
    same, differ = data_figures(rows)
    if not same and not differ:
        return ""
    text = ", ".join(f"{k[len(DATA_PREFIX):]} {_plain(v)}" for k, v in same.items())
    line = f"Data, the same in every trial: {text}." if text else ""
    if differ:
        line += f" Differing by trial (see each run's tags): {', '.join(differ)}."
    return line.strip()


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class TableRow:
    """One model: the mean and interval of every RIS and probe key over its runs (its seeds)."""

    model: str
    runs: int
    cells: dict[str, Interval] = field(default_factory=dict)
    paper: bool = False

    @property
    def mean(self) -> dict[str, float]:
        return {k: v.mean for k, v in self.cells.items()}


def group_rows(rows: list[dict[str, Any]], knobs: list[str]) -> list[TableRow]:
    """One row per group of runs over seeds (`orchestrator.rows.group_over_seeds`)."""
    probes = probe_keys(rows)
    table = []
    for group in group_over_seeds(rows, knobs):
        out = TableRow(model=group.label, runs=len(group.rows))
        for key in [ris_key(i, top) for i in INVARIANCES for top in TOPS] + probes:
            interval = group.interval(key)
            if interval.n:
                out.cells[key] = interval
        table.append(out)
    return table


def probe_keys(rows) -> list[str]:
    """The probe metrics present, in the order of SHORT_PROBES, then any others by name."""
    found = {k for row in rows for k in (row.mean if isinstance(row, TableRow) else row)
             if isinstance(k, str) and k.startswith(PROBE_PREFIX)}
    return [k for k in SHORT_PROBES if k in found] + sorted(found - set(SHORT_PROBES))


def paper_rows(paper: str) -> list[TableRow]:
    if paper not in PAPER_TABLES:
        raise ValueError(f"unknown paper table {paper!r}; choose from {', '.join(PAPER_TABLES)}")
    out = []
    for model, scores in PAPER_TABLES[paper].items():
        row = TableRow(model=model, runs=0, paper=True)
        for invariance, pair in zip(INVARIANCES, scores, strict=True):
            for top, value in zip(TOPS, pair):
                row.cells[ris_key(invariance, top)] = Interval(value, None, 1)
        out.append(row)
    return out


def _cell(row: TableRow, key: str) -> str:
    if key not in row.cells:
        return "-"
    return f"{row.mean[key]:.2f}" if row.paper else row.cells[key].text(2, row.runs)


def markdown(rows: list[TableRow], paper: str, note: str = "", above: str = "") -> str:
    """The Table 1 / 4 layout: project rows, then the paper's rows, Top-10 / Top-25 per cell,
    then the probes (the paper's tables have none: `-`). `above`: what every row shares."""
    probes = probe_keys(rows)
    header = ["model", "runs", *INVARIANCES, *probes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in [*rows, *paper_rows(paper)]:
        cells = [f"{_cell(row, ris_key(i, 'top10'))} / {_cell(row, ris_key(i, 'top25'))}" for i in INVARIANCES]
        cells += [_cell(row, key) for key in probes]
        lines.append("| " + " | ".join([row.model, str(row.runs) if not row.paper else "paper", *cells]) + " |")
    title = f"RIS (%), Top-10 / Top-25, mean ± std over runs; paper rows from {paper.replace('table', 'Table ')}"
    return "\n".join([f"## {title}", "", *([above, ""] if above else []), *lines,
                      *([""] + [note] if note else [])]) + "\n"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def terminal_table(rows: list[TableRow], paper: str, width: int = TERMINAL_WIDTH) -> str:
    """The Markdown's layout for a terminal of `width` columns: the invariances scored here as
    top-10/top-25 (means, one decimal), then the probes; the paper's rows below a rule.

    Labels are cut to fit before any column is dropped; the spread over seeds stays in the
    Markdown on the parent run.
    """
    scored = [i for i in INVARIANCES if any(ris_key(i, "top10") in r.mean for r in rows)]
    probes = probe_keys(rows)
    shown_paper = [p for p in paper_rows(paper) if any(ris_key(i, "top10") in p.mean for i in scored)] if scored else []
    heads = [SHORT_INVARIANCES.get(i, i[:9]) for i in scored] + [SHORT_PROBES.get(k, k[len(PROBE_PREFIX):][:8])
                                                                for k in probes]

    def cells(row: TableRow) -> list[str]:
        pairs = ["/".join(f"{row.mean[ris_key(i, t)]:.1f}" if ris_key(i, t) in row.mean else "-" for t in TOPS)
                 for i in scored]
        return pairs + [f"{row.mean[k]:.1f}" if k in row.mean else "-" for k in probes]

    # The heading above the paper's rows says "paper" and ResNet-50; a Table 1 row's
    # "(ImageNet)" is every row's, so it goes too.
    body = [(r.model.removeprefix("paper: ").removesuffix(" (ImageNet)") if r.paper else r.model, cells(r))
            for r in [*rows, *shown_paper]]
    widths = [max(len(h), *(len(c[j]) for _, c in body)) for j, h in enumerate(heads)]
    label = max([len("top-10/top-25")] + [len(m) for m, _ in body])
    label = max(12, min(label, width - sum(w + 1 for w in widths) - 1))
    line = lambda first, values: (_fit(first, label).ljust(label) + "".join(  # noqa: E731
        " " + v.rjust(w) for v, w in zip(values, widths))).rstrip()
    out = [line("top-10/top-25", heads)]
    out += [line(m, c) for m, c in body[:len(rows)]]
    if shown_paper:
        where = "ResNet-50, ImageNet" if paper == "table1" else "ResNet-50"
        out.append(_fit(f"paper, {paper.replace('table', 'Table ')} ({where}; for orientation, not a target):",
                        width))
        out += [line(m, c) for m, c in body[len(rows):]]
    return "\n".join(out)


def csv_text(rows: list[TableRow], paper: str) -> str:
    """One line per (model, invariance): source, model, runs, invariance, top10, top10_std, top25, top25_std."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["source", "model", "runs", "invariance", "top10", "top10_std", "top25", "top25_std"])
    for row in [*rows, *paper_rows(paper)]:
        for invariance in INVARIANCES:
            keys = [ris_key(invariance, top) for top in TOPS]
            if not any(k in row.mean for k in keys):
                continue
            values = []
            for key in keys:
                values += [_num(row.mean.get(key)), "" if row.paper or key not in row.cells else _num(row.cells[key].half_width)]
            writer.writerow(["paper" if row.paper else "this project", row.model, row.runs, invariance, *values])
    return buffer.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def bar_chart(rows: list[TableRow], paper: str, invariance: str):
    """Top-10 and Top-25 RIS of every row for one invariance: project rows with their seed
    spread as error bars, the paper's rows hatched."""
    from matplotlib.figure import Figure

    shown = [r for r in [*rows, *paper_rows(paper)] if ris_key(invariance, "top10") in r.mean]
    figure = Figure(figsize=(max(6.4, 0.9 * len(shown) + 2), 4.2), layout="constrained")
    axes = figure.add_subplot()
    width = 0.38
    for j, top in enumerate(TOPS):
        key = ris_key(invariance, top)
        xs = [i + (j - 0.5) * width for i in range(len(shown))]
        bars = axes.bar(xs, [r.mean.get(key, math.nan) for r in shown], width,
                        yerr=[0.0 if r.paper or key not in r.cells else r.cells[key].half_width or 0.0 for r in shown],
                        capsize=3, label=top, color=f"C{j}")
        for bar, row in zip(bars, shown):
            if row.paper:
                bar.set_hatch("//")
                bar.set_alpha(0.5)
    axes.set_xticks(range(len(shown)), [r.model for r in shown], rotation=30, ha="right", fontsize="small")
    axes.set_ylabel("RIS (%)")
    axes.set_ylim(0, 100)
    axes.set_title(f"{invariance}: Top-K RIS (hatched: paper, {paper.replace('table', 'Table ')})")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small")
    return figure


@dataclass
class Tables:
    """Everything one report consists of, by artifact name."""

    markdown: str
    csv: str
    charts: dict[str, Any]  # invariance -> matplotlib Figure

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "ris_table.md", out / "ris_table.csv"]
        written[0].write_text(self.markdown)
        written[1].write_text(self.csv)
        for invariance, figure in self.charts.items():
            path = out / f"ris_{invariance}.png"
            figure.savefig(path)
            written.append(path)
        return written

    def log(self, client, run_id: str, prefix: str = "tables") -> None:
        client.log_text(run_id, self.markdown, f"{prefix}/ris_table.md")
        client.log_text(run_id, self.csv, f"{prefix}/ris_table.csv")
        for invariance, figure in self.charts.items():
            client.log_figure(run_id, figure, f"{prefix}/ris_{invariance}.png")


def build(rows: list[dict[str, Any]], knobs: list[str], paper: str = "table1") -> Tables | None:
    """The report for flat run rows (knobs + metrics); None when no run has any RIS key."""
    table = group_rows(rows, knobs)
    scored = [i for i in INVARIANCES if any(ris_key(i, "top10") in r.mean for r in table)]
    if not scored:
        return None
    return Tables(markdown=markdown(table, paper, comparability(rows), data_line(rows)),
                  csv=csv_text(table, paper),
                  charts={i: bar_chart(table, paper, i) for i in scored})


def run_rows(client, run_ids: list[str]) -> list[dict[str, Any]]:
    return summary_rows([client.get_run(r) for r in run_ids], [])


def main(argv: list[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from orchestrator.compare import SweepNotFound, child_run_ids, find_parent
    from orchestrator.tracking import resolve_tracking_uri

    parser = argparse.ArgumentParser(prog="python -m orchestrator.tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", nargs="?", help="sweep name (--name of the sweep) or its parent run id")
    parser.add_argument("--runs", nargs="+", default=[], metavar="RUN_ID",
                        help="any runs instead of a sweep (e.g. checkpoints scored by orchestrator.score)")
    parser.add_argument("--knobs", nargs="+", default=None, metavar="PARAM",
                        help="params that name a row (default: the sweep's swept knobs; none for --runs)")
    parser.add_argument("--paper", choices=sorted(PAPER_TABLES), default="table1",
                        help="published rows to print beside (table1: image models, table4: video models)")
    parser.add_argument("--out", default="", help="also write the files into this folder")
    parser.add_argument("--no-log", action="store_true", help="do not log the tables on the sweep's parent run")
    parser.add_argument("--tracking-uri", default="",
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    args = parser.parse_args(argv)
    if bool(args.sweep) == bool(args.runs):
        parser.error("give a sweep (name or parent run id) or --runs, not both")
    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///"):]):
        print(f"error: no MLflow store at {uri}; pass --tracking-uri", file=sys.stderr)
        return 2
    client = MlflowClient(uri)
    parent = None
    try:
        if args.sweep:
            parent = find_parent(client, args.sweep)
            knobs = args.knobs if args.knobs is not None else _swept_knobs(parent)
            rows = summary_rows([client.get_run(r) for r in child_run_ids(client, parent)], knobs)
        else:
            knobs = args.knobs or []
            rows = summary_rows([client.get_run(r) for r in args.runs], knobs)
    except (SweepNotFound, MlflowException) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tables = build(rows, knobs, args.paper)
    if tables is None:
        print(f"error: none of the {len(rows)} run(s) has any ris/* metric", file=sys.stderr)
        return 2
    print(tables.markdown)
    if args.out:
        for path in tables.write(args.out):
            print(f"wrote {path}")
    if parent is not None and not args.no_log:
        tables.log(client, parent.info.run_id)
        print(f"logged under tables/ on parent run {parent.info.run_id}")
    return 0


def _swept_knobs(parent) -> list[str]:
    """The knobs a sweep recorded on its parent run (tag `dssl.knobs`, comma separated)."""
    from orchestrator.tracking import TAG_KNOBS

    value = parent.data.tags.get(TAG_KNOBS, "")
    return [k for k in value.split(",") if k]


if __name__ == "__main__":
    sys.exit(main())
