"""A report table as data: which metric families are its columns, the published rows set
beside it, its title and notes. Sweeps name the tables they want (``run_cli(tables=...)``),
``orchestrator.paper_tables`` declares the paper's, and ``orchestrator.tables.build`` is the
one function that lays any of them out.

Columns are not listed here: every registered part (invariance set, probe, method) declares
the columns of the metrics it reports (``Part.report_columns``, a
:class:`datasets.registry.ReportColumn` each), and a table shows those of its families. A
new part thus shows up in every table of its family without a line here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets.registry import ReportColumn


@dataclass(frozen=True)
class Published:
    """One published row: its label in Markdown, its shorter label on a terminal, and its
    figures by metric key (a key it lacks is printed ``-``)."""

    label: str
    values: dict[str, float]
    short: str = ""


@dataclass(frozen=True)
class TableSpec:
    """A table: rows are the sweep's runs grouped over seeds (orchestrator.rows), columns
    the registered parts' columns whose keys start with one of `families` (in that order;
    within a family, those of the published rows first, in their order)."""

    name: str  # how a command names it (python -m orchestrator.tables --table NAME)
    file: str  # its artifacts: tables/<file>.md, tables/<file>.csv, tables/<chart_prefix>_<column>.png
    title: str
    families: tuple[str, ...]  # metric-key prefixes, e.g. ("ris/", "probe/")
    needs: tuple[str, ...] = ()  # built only when a run has a metric under one of these ("": families)
    published: tuple[Published, ...] = ()
    published_heading: str = ""  # the line above the published rows on a terminal
    note: str = ""  # said below the Markdown table
    terminal_head: str = "model"  # the first column's head on a terminal
    chart_prefix: str = ""  # "" = file
    best_by: tuple[str, ...] = ()  # the sweep's best trial: the highest of the first key runs have

    @property
    def charts(self) -> str:
        return self.chart_prefix or self.file


def registered_columns() -> list[ReportColumn]:
    """Every column the registered parts declare: invariance sets, probes, then methods,
    each registry in its names' order."""
    from datasets.invariance_sets import INVARIANCE_SETS
    from trainables.methods import METHODS
    from trainables.probes import PROBES

    out: dict[tuple[str, ...], ReportColumn] = {}
    for registry in (INVARIANCE_SETS, PROBES, METHODS):
        for name in registry.names():
            for column in registry.get(name).report_columns():
                out.setdefault(column.keys, column)
    return list(out.values())


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def columns(spec: TableSpec, rows: list[dict[str, Any]]) -> list[ReportColumn]:
    """The spec's columns for these rows: every registered column of its families that a
    run or a published row has a figure for; then, so that no figure is dropped, each key
    of its families no registered part declares (an old store's), headed by the key."""
    present = {k for row in rows for k, v in row.items() if isinstance(k, str) and _number(v)}
    published = list(dict.fromkeys(k for p in spec.published for k in p.values))
    declared = registered_columns()
    out: list[ReportColumn] = []
    for family in spec.families:
        mine = [c for c in declared if c.keys[0].startswith(family)
                and any(k in present or k in published for k in c.keys)]
        first = sorted((c for c in mine if any(k in published for k in c.keys)),
                       key=lambda c: min(published.index(k) for k in c.keys if k in published))
        out += first + [c for c in mine if c not in first]
        known = {k for c in declared for k in c.keys}
        out += [ReportColumn((k,), k) for k in sorted(present) if k.startswith(family) and k not in known]
    return out
