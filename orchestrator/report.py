"""What a finished sweep prints: where to see it in MLflow (the UI command for a local
store, the trials and compare-runs pages), what varied and what did not, and, last, the
sweep's tables (orchestrator.tables) with the published rows below, within 100 columns."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

from orchestrator.compare import is_server, ui_command
from orchestrator.naming import SEED, short_key
from orchestrator.paper_tables import TABLE1
from orchestrator.tables import TERMINAL_WIDTH, build_all, comparability, data_line


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


def table(rows: list[dict[str, Any]], first: list[str]) -> str:
    """A plain-text table: the given columns first, then every metric, sorted by name."""
    metrics = sorted({k for row in rows for k in row} - set(first))
    columns = first + metrics
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.rjust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b")
_TRIAL_FOLDER = re.compile(r"^.*?_[0-9a-f]{5}_\d{5}_\d+_(.+)_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}$")


def failure_line(error: str, width: int = TERMINAL_WIDTH) -> str:
    """One line for a failed trial (`<trial folder>: <Tune's error text>`): its folder's name
    and the line that says why (an OOM kill, else the last exception raised), cut to `width`.
    A traceback on the terminal would bury the result."""
    path, _, text = error.partition(": ")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    killed = [line for line in lines if "killed due to" in line]
    raised = [line for line in lines if _EXCEPTION.match(line)]
    reason = (killed or raised[-1:] or lines or ["unknown error"])[0]
    # Tune names a trial's folder <trainable>_<id>_<index>_<its config>_<date>: the config says which.
    name = Path(path).name
    named = _TRIAL_FOLDER.match(name)
    line = f"  {named.group(1) if named else name}: {reason}"
    return line if len(line) <= width else line[:width - 1] + "…"


def _order(value: Any) -> tuple:
    """Numbers by value, anything else by text, numbers first."""
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _values(rows: list[dict[str, Any]], key: str) -> str:
    seen = sorted({row.get(key) for row in rows if row.get(key) is not None}, key=_order)
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in seen)


def varies_line(rows: list[dict[str, Any]], knobs: list[str], fixed: dict[str, Any]) -> str:
    """What differs between the rows (the knobs, by the short name rows are labelled with) and what not."""
    named = [f"{short_key(k)} = {_values(rows, k)}" + (f" ({k})" if short_key(k) != k else "")
             for k in knobs if k != SEED]
    if SEED in knobs:
        named.append(f"seed = {_values(rows, SEED)} (each row: the mean over its seeds)")
    text = "Varies: " + ("; ".join(named) if named else "nothing (one trial)") + "."
    if fixed:
        text += " Same in every trial: " + ", ".join(f"{short_key(k)}={v}" for k, v in fixed.items())
        text += ", and every other setting (the params of each run)."
    return text


def _wrap(text: str, width: int = TERMINAL_WIDTH) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False) if text else []


def summary(outcome, tables=(TABLE1,)) -> str:
    """The sweep's result for a terminal: links first (they are long), its `tables` last
    (orchestrator.tables: their terminal layout), at 100 columns."""
    knobs = outcome.knobs
    rows = sorted(outcome.rows, key=lambda r: [_order(r.get(k)) for k in knobs])
    failed = f", {len(outcome.errors)} failed" if outcome.errors else ""
    if outcome.interrupted:
        head = f"{len(rows)} trials{failed}, interrupted"
    else:
        head = f"{len(rows)} trials, {len(rows) - len(outcome.errors)} finished{failed}"
    parts = [f"Sweep {outcome.name}: {head}."]
    parts.append(f"Results: {outcome.experiment_path}")
    if getattr(outcome, "log_path", ""):
        parts.append(f"Log:     {outcome.log_path}")
    parts += ["", f"MLflow: experiment {outcome.experiment!r}, parent run {outcome.parent_run_id}",
              f"Store:        {outcome.tracking_uri}"]
    if not is_server(outcome.tracking_uri):
        parts.append(f"Open the UI:  {ui_command(outcome.tracking_uri)}")
    if outcome.runs_url:
        parts.append(f"Trials:       {outcome.runs_url}")
    if outcome.compare_url:
        parts.append(f"Compare:      {outcome.compare_url}")
        parts.append(f"              (later: python -m orchestrator.compare {outcome.name} --open)")
    built = build_all(tables, rows, knobs)
    if built:
        parts.append("Tables:       tables/ on the parent run (again: python -m orchestrator.tables <sweep>)")
    else:  # e.g. a sweep measuring only its own probes: its figures are the charts and the trial table
        parts.append("Tables:       none (no trial logged a metric they read); summary/ and charts/ on the parent run")
    if outcome.tracking_errors:
        parts.append(f"MLflow: {outcome.tracking_errors} write(s) failed after retries (see the log)")
    if outcome.interrupted:
        parts += [""] + _wrap(f"Interrupted: the parent run and its running trials are marked KILLED; "
                              f"continue with --resume --name {outcome.name}")
    if outcome.errors:
        parts += ["", f"{len(outcome.errors)} trial(s) failed (the whole error: error.txt in the trial's "
                      "folder under Results):", *(failure_line(e) for e in outcome.errors)]
    parts += [""] + _wrap(varies_line(rows, knobs, getattr(outcome, "fixed", {})))
    parts += _wrap(data_line(rows)) + _wrap(comparability(rows))
    for table in built:
        parts += ["", f"{table.spec.title}:", table.terminal]
    return "\n".join(parts)
