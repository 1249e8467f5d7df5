"""What a finished sweep prints: a trial x metric table, the paper's figures beside it,
and where to see the runs in MLflow (the UI command for a local store, then the
experiment and compare-runs pages)."""
from __future__ import annotations

from typing import Any

from datasets.invariance_sets import INVARIANCES
from orchestrator.compare import is_server, ui_command
from orchestrator.tables import PAPER_TABLES

# Purushwalkam & Gupta (2020), Table 1: MoCo v2 on ImageNet, ResNet-50 (RIS %, top10/top25),
# in the order of INVARIANCES; orchestrator.tables holds the published tables.
PAPER_MOCO_V2_IMAGENET = dict(zip(INVARIANCES, PAPER_TABLES["table1"]["paper: MoCo v2 (ImageNet)"], strict=True))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


def table(rows: list[dict[str, Any]], first: list[str]) -> str:
    """A plain-text table: the swept knobs first, then every metric, sorted by name."""
    metrics = sorted({k for row in rows for k in row} - set(first))
    columns = first + metrics
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.rjust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


# Targets the paper's RIS averages over (Sec. 3.2): ALOI's 1,000 objects.
PAPER_ALOI_OBJECTS = 1000
TARGETS_PREFIX = "data/ris_targets/"


def comparability(rows: list[dict[str, Any]]) -> str:
    """The targets each invariance was scored over here, and whether the paper's figures compare."""
    counts: dict[str, set] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith(TARGETS_PREFIX):
                counts.setdefault(key[len(TARGETS_PREFIX):], set()).add(int(value))
    if not counts:
        return ""
    here = ", ".join(f"{name} {'/'.join(map(str, sorted(n)))}" for name, n in sorted(counts.items()))
    return (f"Targets scored here: {here}. The paper's ALOI scores average over "
            f"{PAPER_ALOI_OBJECTS:,} objects; RIS is comparable only at equal target counts "
            "(each target's share P(y) sets its firing threshold), so read the paper's figures "
            "for orientation, not as a target.")


def summary(outcome) -> str:
    knobs = outcome.knobs
    rows = sorted(outcome.rows, key=lambda r: [str(r.get(k)) for k in knobs])
    shown = [{k: v for k, v in row.items() if not k.startswith(TARGETS_PREFIX)} for row in rows]
    paper = ", ".join(
        f"{name} {t10:.2f}/{t25:.2f}" for name, (t10, t25) in PAPER_MOCO_V2_IMAGENET.items()
    )
    parts = [
        f"Sweep {outcome.name}: {len(rows)} trials ({outcome.experiment_path})",
        table(shown, knobs),
        "",
        f"Paper, MoCo v2 on ImageNet, ResNet-50 (RIS top10/top25 %): {paper}",
        comparability(rows),
        "",
        f"MLflow: experiment {outcome.experiment!r}, parent run {outcome.parent_run_id}, "
        f"store {outcome.tracking_uri}",
    ]
    if not is_server(outcome.tracking_uri):
        parts.append(f"Open the UI:  {ui_command(outcome.tracking_uri)}")
    if outcome.runs_url:
        parts.append(f"Trials:       {outcome.runs_url}")
    parts.append(f"RIS tables:   tables/ on the parent run "
                 f"(or: python -m orchestrator.tables {outcome.name} --out tables/)")
    if outcome.compare_url:
        parts.append(f"Compare:      {outcome.compare_url}")
        parts.append(f"              (later: python -m orchestrator.compare {outcome.name} --open)")
    if outcome.tracking_errors:
        parts.append(f"MLflow: {outcome.tracking_errors} write(s) failed after retries (see the log above)")
    if outcome.interrupted:
        parts += ["", f"Interrupted: the parent run and its running trials are marked KILLED; "
                      f"continue with --resume --name {outcome.name}"]
    if outcome.errors:
        parts += ["", f"{len(outcome.errors)} trial(s) failed:", *outcome.errors]
    return "\n".join(parts)
