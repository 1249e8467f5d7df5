"""Every report table of a sweep or any list of runs, built by one function from its
declaration (orchestrator.table_spec), the published rows beside it.

A row is one combination of a sweep's knobs, its seeds aggregated (orchestrator.rows: mean
± 95% t-interval, seed count shown); the columns are the registered parts' (each
invariance set, probe and method declares its own); the paper's rows follow, for
orientation only (RIS compares only at equal target counts: see the comparability line).
Written as Markdown, as CSV (one line per row and metric) and as one bar chart per column;
a sweep logs them on its parent run under `tables/`, and this command writes them for any
sweep or runs afterwards:

    python -m orchestrator.tables crop_scale-20261128-101500-42        # a sweep, by name
    python -m orchestrator.tables 3f2a...c9 --out tables/              # its parent run id
    python -m orchestrator.tables --runs 81ab... 77cd... --table table4  # any runs
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

from datasets.registry import ReportColumn
from orchestrator.paper_tables import PAPER_TABLES, TABLE1
from orchestrator.rows import INTERVAL_NOTE, Interval, group_over_seeds, summary_rows
from orchestrator.table_spec import TableSpec, columns

TERMINAL_WIDTH = 100
TAG_TABLES = "dssl.tables"  # parent run: the names of the sweep's tables, comma separated
# Targets the paper's RIS averages over (Sec. 3.2): ALOI's 1,000 objects.
PAPER_ALOI_OBJECTS = 1000
TARGETS_PREFIX = "data/ris_targets/"
DATA_PREFIX = "data/"


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
    """One model: the mean and interval of every column key over its runs (its seeds), or a
    published row (its figures, no interval)."""

    model: str
    runs: int
    cells: dict[str, Interval] = field(default_factory=dict)
    paper: bool = False
    short: str = ""  # a published row's label on a terminal

    @property
    def mean(self) -> dict[str, float]:
        return {k: v.mean for k, v in self.cells.items()}

    def cell(self, key: str, digits: int) -> str:
        if key not in self.cells:
            return "-"
        return f"{self.cells[key].mean:.{digits}f}" if self.paper else self.cells[key].text(digits, self.runs)


def table_rows(spec: TableSpec, rows: list[dict[str, Any]], knobs: list[str],
               shown: list[ReportColumn]) -> tuple[list[TableRow], list[TableRow]]:
    """(this project's rows: one per group over seeds, the published rows)."""
    keys = [k for c in shown for k in c.keys]
    ours = []
    for group in group_over_seeds(rows, knobs):
        row = TableRow(model=group.label, runs=len(group.rows))
        row.cells = {k: i for k in keys if (i := group.interval(k)).n}
        ours.append(row)
    paper = [TableRow(model=p.label, runs=0, paper=True, short=p.short or p.label,
                      cells={k: Interval(v, None, 1) for k, v in p.values.items()}) for p in spec.published]
    return ours, paper


def _markdown_line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(spec: TableSpec, shown: list[ReportColumn], ours: list[TableRow], paper: list[TableRow],
             notes: list[str]) -> str:
    """Project rows, then the published rows (runs: `paper`), then the notes."""
    header = ["model", "runs", *(c.label for c in shown)]
    lines = [_markdown_line(header), "|" + "---|" * len(header)]
    for row in [*ours, *paper]:
        cells = [" / ".join(row.cell(k, c.digits) for k in c.keys) for c in shown]
        lines.append(_markdown_line([row.model, "paper" if row.paper else str(row.runs), *cells]))
    return "\n".join([f"## {spec.title}", "", *lines, "", *[n for n in notes if n]]) + "\n"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def terminal_table(spec: TableSpec, shown: list[ReportColumn], ours: list[TableRow], paper: list[TableRow],
                   width: int = TERMINAL_WIDTH) -> str:
    """The Markdown's layout for a terminal of `width` columns: the columns measured here
    (means, one decimal fewer), the published rows below their heading.

    Labels are cut to fit before any column is dropped; the intervals stay in the Markdown.
    """
    scored = [c for c in shown if any(k in r.cells for r in ours for k in c.keys)]
    shown_paper = [p for p in paper if any(k in p.cells for c in scored for k in c.keys)]
    heads = [c.short or c.label for c in scored]

    def cells(row: TableRow) -> list[str]:
        return ["/".join(f"{row.cells[k].mean:.{max(c.digits - 1, 0)}f}" if k in row.cells else "-"
                         for k in c.keys) for c in scored]

    body = [(r.short if r.paper else r.model, cells(r)) for r in [*ours, *shown_paper]]
    widths = [max(len(h), *(len(c[j]) for _, c in body)) for j, h in enumerate(heads)]
    label = max([len(spec.terminal_head)] + [len(m) for m, _ in body])
    label = max(12, min(label, width - sum(w + 1 for w in widths) - 1))
    line = lambda first, values: (_fit(first, label).ljust(label) + "".join(  # noqa: E731
        " " + v.rjust(w) for v, w in zip(values, widths))).rstrip()
    out = [line(spec.terminal_head, heads)]
    out += [line(m, c) for m, c in body[:len(ours)]]
    if shown_paper:
        out.append(_fit(spec.published_heading or "paper:", width))
        out += [line(m, c) for m, c in body[len(ours):]]
    return "\n".join(out)


def csv_text(shown: list[ReportColumn], ours: list[TableRow], paper: list[TableRow]) -> str:
    """One line per (row, metric): source, model, runs, metric, mean, ci95_half_width, std, n."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["source", "model", "runs", "metric", "mean", "ci95_half_width", "std", "n"])
    for row in [*ours, *paper]:
        for key in (k for c in shown for k in c.keys):
            if key in row.cells:
                i = row.cells[key]
                writer.writerow(["paper" if row.paper else "this project", row.model, "" if row.paper else row.runs,
                                 key, _num(i.mean), _num(i.half_width), _num(i.std), "" if row.paper else i.n])
    return buffer.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def bar_chart(spec: TableSpec, column: ReportColumn, rows: list[TableRow]):
    """One column's figures for every row that has them: a bar per key (Top-10 and Top-25 for
    RIS), this project's with their 95% interval as error bars, the paper's hatched."""
    from matplotlib.figure import Figure

    shown = [r for r in rows if any(k in r.cells for k in column.keys)]
    figure = Figure(figsize=(max(6.4, 0.9 * len(shown) + 2), 4.2), layout="constrained")
    axes = figure.add_subplot()
    width = 0.76 / len(column.keys)
    for j, key in enumerate(column.keys):
        xs = [i + (j - (len(column.keys) - 1) / 2) * width for i in range(len(shown))]
        bars = axes.bar(xs, [r.cells[key].mean if key in r.cells else math.nan for r in shown], width,
                        yerr=[(r.cells[key].half_width or 0.0) if key in r.cells else 0.0 for r in shown],
                        capsize=3, label=key.rsplit("/", 1)[-1], color=f"C{j}")
        for bar, row in zip(bars, shown):
            if row.paper:
                bar.set_hatch("//")
                bar.set_alpha(0.5)
    axes.set_xticks(range(len(shown)), [r.model for r in shown], rotation=30, ha="right", fontsize="small")
    axes.set_ylabel(column.label + (" (%)" if column.percent else ""))
    if column.percent:
        axes.set_ylim(0, 100)
    axes.set_title(f"{column.label} (error bars: 95% interval; hatched: paper)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small")
    return figure


@dataclass
class Table:
    """One built table, by artifact: Markdown, CSV, a chart per column, the terminal text."""

    spec: TableSpec
    markdown: str
    csv: str
    charts: dict[str, Any]  # column name -> matplotlib Figure
    terminal: str

    def files(self) -> dict[str, str]:
        return {f"{self.spec.file}.md": self.markdown, f"{self.spec.file}.csv": self.csv}

    def chart_file(self, name: str) -> str:
        return f"{self.spec.charts}_{name}.png"

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in self.files().items():
            (out / name).write_text(text)
            written.append(out / name)
        for name, figure in self.charts.items():
            figure.savefig(out / self.chart_file(name))
            written.append(out / self.chart_file(name))
        return written

    def log(self, client, run_id: str, prefix: str = "tables") -> None:
        for name, text in self.files().items():
            client.log_text(run_id, text, f"{prefix}/{name}")
        for name, figure in self.charts.items():
            client.log_figure(run_id, figure, f"{prefix}/{self.chart_file(name)}")


def build(spec: TableSpec, rows: list[dict[str, Any]], knobs: list[str]) -> Table | None:
    """The one builder of every table: `rows` (flat knob and metric dicts, one per run) grouped
    over seeds, the spec's columns, its published rows; None when no run has a metric it needs."""
    needs = spec.needs or spec.families
    if not any(isinstance(k, str) and k.startswith(needs) and isinstance(v, (int, float))
               for row in rows for k, v in row.items()):
        return None
    shown = columns(spec, rows)
    ours, paper = table_rows(spec, rows, knobs, shown)
    ris = any(k.startswith("ris/") for c in shown for k in c.keys)
    notes = [INTERVAL_NOTE, spec.note, comparability(rows) if ris else ""]
    above = data_line(rows)
    text = markdown(spec, shown, ours, paper, notes)
    if above:
        text = text.replace("\n\n", f"\n\n{above}\n\n", 1)
    charted = [c for c in shown if any(k in r.cells for r in ours for k in c.keys)]
    return Table(spec, text, csv_text(shown, ours, paper),
                 {c.name: bar_chart(spec, c, [*ours, *paper]) for c in charted},
                 terminal_table(spec, shown, ours, paper))


def build_all(specs, rows: list[dict[str, Any]], knobs: list[str]) -> list[Table]:
    """The tables among `specs` that these rows have figures for."""
    return [t for t in (build(s, rows, knobs) for s in specs) if t is not None]


def main(argv: list[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from orchestrator.compare import SweepNotFound, child_run_ids, find_parent
    from orchestrator.tracking.store import resolve_tracking_uri

    parser = argparse.ArgumentParser(prog="python -m orchestrator.tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", nargs="?", help="sweep name (--name of the sweep) or its parent run id")
    parser.add_argument("--runs", nargs="+", default=[], metavar="RUN_ID",
                        help="any runs instead of a sweep (e.g. checkpoints scored by orchestrator.score)")
    parser.add_argument("--knobs", nargs="+", default=None, metavar="PARAM",
                        help="params that name a row (default: the sweep's swept knobs; none for --runs)")
    parser.add_argument("--table", "--paper", dest="tables", nargs="+", choices=sorted(PAPER_TABLES), default=None,
                        metavar="TABLE", help="the tables, by name: " + ", ".join(sorted(PAPER_TABLES)) + " (default: "
                        "the sweep's, as recorded on its parent run; table1 for --runs)")
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
    names = args.tables or (_sweep_tables(parent) if parent is not None else []) or [TABLE1.name]
    specs = [PAPER_TABLES[n] for n in names]
    built = build_all(specs, rows, knobs)
    if not built:
        print(f"error: none of the {len(rows)} run(s) has a metric of table(s) {', '.join(names)}", file=sys.stderr)
        return 2
    for table in built:
        print(table.markdown)
        if args.out:
            for path in table.write(args.out):
                print(f"wrote {path}")
        if parent is not None and not args.no_log:
            table.log(client, parent.info.run_id)
    if parent is not None and not args.no_log:
        print(f"logged under tables/ on parent run {parent.info.run_id}")
    return 0


def _sweep_tables(parent) -> list[str]:
    """The tables a sweep named (tag `dssl.tables`) that this command knows by name."""
    return [n for n in parent.data.tags.get(TAG_TABLES, "").split(",") if n in PAPER_TABLES]


def _swept_knobs(parent) -> list[str]:
    """The knobs a sweep recorded on its parent run (tag `dssl.knobs`, comma separated)."""
    from orchestrator.tracking.keys import TAG_KNOBS

    value = parent.data.tags.get(TAG_KNOBS, "")
    return [k for k in value.split(",") if k]


if __name__ == "__main__":
    sys.exit(main())
