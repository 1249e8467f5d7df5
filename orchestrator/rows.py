"""A sweep's trials as flat rows, the one grouping of rows over seeds, and the one way a
mean over seeds is written (every table, chart and study verdict uses these).

A row is one child run: its name and id, the swept knobs (typed), its final metrics and
its ``data/*`` tags. Runs whose knobs are equal but for the seed are repeats: they form
one group, and each metric of a group is its mean with the 95% Student-t interval over
its runs, written ``mean ± half-width``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from orchestrator.naming import SEED, trial_label

CONFIDENCE = 0.95
# One sentence under every table that uses `Interval.text`: what a cell's figures are.
INTERVAL_NOTE = ("Cells: mean ± 95% t-interval half-width over the row's runs (seeds); "
                 "(n=k) where fewer runs have the metric; one run: its value.")


def summary_rows(children, knobs: list[str]) -> list[dict[str, Any]]:
    """One row per child run: its name and id, the swept knobs (typed), its final metrics."""
    rows = []
    for run in sorted(children, key=lambda r: r.info.run_name or ""):
        row: dict[str, Any] = {"run": run.info.run_name, "run_id": run.info.run_id,
                               "status": run.info.status}
        row |= {k: typed(run.data.params.get(k)) for k in knobs}
        row |= dict(sorted(run.data.metrics.items()))
        # Data figures are tags (orchestrator.tracking.keys: constants of a trial, not metrics).
        row |= {k: typed(v) for k, v in sorted(run.data.tags.items()) if k.startswith("data/")}
        rows.append(row)
    return rows


def typed(value: str | None) -> Any:
    """A param read back from MLflow (always text) as the int or float it was."""
    if value is None:
        return None
    try:
        return float(value) if any(c in value for c in ".eE") else int(value)
    except ValueError:
        return value


def number(value: Any) -> float | None:
    """A finite number as float; None for anything else (missing, NaN, text, bool)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


# -- the one mean-and-interval ----------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A mean with its 95% t-interval half-width (None below two values)."""

    mean: float
    half_width: float | None
    n: int
    std: float | None = None  # the sample standard deviation (None below two values)

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def text(self, digits: int = 2, runs: int | None = None) -> str:
        """``mean ± half-width``; one value: the value; none: ``-``. ``(n=k)`` follows when
        the interval covers fewer values than the `runs` of its row (or always, without `runs`)."""
        if self.n == 0:
            return "-"
        value = f"{self.mean:.{digits}f}"
        if self.half_width is not None:
            value += f" ± {self.half_width:.{digits}f}"
        return value if runs is not None and self.n >= runs else f"{value} (n={self.n})"


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and half-width t_{(1+c)/2, n-1} * s / sqrt(n) (Student's t, sample sd)."""
    from scipy import stats

    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Interval(math.nan, None, 0)
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, None, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n), n, sd)


# -- the one grouping over seeds ----------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """Runs that differ only by their seed: one row of a table."""

    label: str
    rows: tuple[dict[str, Any], ...]

    def interval(self, key: str) -> Interval:
        return t_interval([v for v in (number(r.get(key)) for r in self.rows) if v is not None])


def _order(value: Any) -> tuple:
    """Numbers by value, anything else by text, numbers first; missing last."""
    if value is None:
        return (2, 0, "")
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def naming_knobs(rows: list[dict[str, Any]], knobs: list[str]) -> list[str]:
    """The knobs that name a group: every swept knob but the seed, less one that differs only
    by being absent (a setting one method has and another has not, as in a sweep over
    methods). `method` always names its rows."""
    return [k for k in knobs if k != SEED
            and (k == "method" or len({repr(r.get(k)) for r in rows if r.get(k) is not None}) > 1)]


def group_over_seeds(rows: list[dict[str, Any]], knobs: list[str]) -> list[Group]:
    """Runs with equal knobs (seed aside) form one group, labelled by those knobs
    (`orchestrator.naming.trial_label`) and ordered by their values.

    With knobs but none naming a group (only seeds swept), all runs are one group,
    "all runs"; with no knobs at all (runs picked by hand), each run is its own group,
    named by its run name.
    """
    named = naming_knobs(rows, knobs)
    groups: dict[str, list[dict[str, Any]]] = {}
    order: dict[str, tuple] = {}
    for i, row in enumerate(rows):
        if named:
            label = trial_label(row, named)
        elif knobs:
            label = "all runs"
        else:
            label = str(row.get("run") or f"run {i}")
        groups.setdefault(label, []).append(row)
        order.setdefault(label, tuple(_order(row.get(k)) for k in named) + ((0, i, ""),) * (not knobs))
    return [Group(label, tuple(groups[label])) for label in sorted(groups, key=lambda g: order[g])]
