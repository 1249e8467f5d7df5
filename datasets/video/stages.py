"""A cache of pipeline stages, each stored under a key of its inputs and parameters.

A stage's output lives in ``<cache>/video-stages/<name>-v<version>-<digest>/``: its
Parquet files under ``data/`` and ``stage.json`` (name, parameters, input keys,
counters, problems, seconds it took). The digest hashes the stage name, version,
parameters and the keys of what it reads (the source listing or earlier stages), so a
knob change gives a new key for its stage and, through the input keys, for every stage
after it, while stages before it keep their keys and are reused. Folders are built with
:func:`datasets.cache.build_once` (atomic, safe under concurrent runs).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets.cache import build_once, cache_root, is_complete

log = logging.getLogger(__name__)

STAGES_FOLDER = "video-stages"
DATA_FOLDER = "data"
STAGE_FILE = "stage.json"


def stages_root(cache: str = "") -> Path:
    return cache_root(cache) / STAGES_FOLDER


def stage_key(name: str, version: int, params: dict[str, Any], inputs: list[str]) -> str:
    """``<name>-v<version>-<16 hex digits>`` over the name, version, parameters and input keys."""
    payload = json.dumps({"stage": name, "version": version, "params": params, "inputs": inputs},
                         sort_keys=True, default=str)
    return f"{name}-v{version}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


@dataclass
class StageResult:
    """What one stage did: its key and folder, whether it was reused, its counters and time."""

    name: str
    key: str
    path: Path
    reused: bool
    seconds: float
    counters: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.path / DATA_FOLDER

    def summary(self) -> str:
        """A few lines: what the stage holds, what it skipped, whether it was computed or reused."""
        status = "reused" if self.reused else "computed"
        counts = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in self.counters.items())
        lines = [f"[{self.name}] {status} in {self.seconds:.1f} s  key {self.key}", f"    {counts}", f"    {self.path}"]
        lines += [f"    problem: {p}" for p in self.problems[:5]]
        if len(self.problems) > 5:
            lines.append(f"    ... {len(self.problems) - 5} more problems in {self.path / STAGE_FILE}")
        return "\n".join(lines)


def run_stage(cache_dir: Path, name: str, version: int, params: dict[str, Any], inputs: list[str],
              compute: Callable[[Path], tuple[dict[str, int], list[str]]]) -> StageResult:
    """Reuse the stage stored under its key, or ``compute(data_folder) -> (counters, problems)`` it."""
    key = stage_key(name, version, params, inputs)
    target = Path(cache_dir) / key
    started = time.perf_counter()
    computed = False

    def build(tmp: Path) -> None:
        nonlocal computed
        computed = True
        counters, problems = compute(tmp / DATA_FOLDER)
        record = {
            "name": name, "key": key, "version": version, "params": params, "inputs": inputs,
            "counters": counters, "problems": problems, "seconds": round(time.perf_counter() - started, 3),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / STAGE_FILE).write_text(json.dumps(record, indent=1, default=str) + "\n")

    if not is_complete(target):
        build_once(target, build)  # another run may finish it while we wait: then `computed` stays False
    record = json.loads((target / STAGE_FILE).read_text())
    result = StageResult(name, key, target, reused=not computed,
                         seconds=record["seconds"] if computed else time.perf_counter() - started,
                         counters=record["counters"], problems=record["problems"], params=params)
    log.info("stage %s %s: %s", name, "computed" if computed else "reused", target)
    return result


def list_stages(cache: str = "") -> list[dict[str, Any]]:
    """The complete stage folders in the cache, oldest first, with their records and sizes."""
    root = stages_root(cache)
    found = []
    for folder in sorted(root.glob("*/")) if root.is_dir() else []:
        if not is_complete(folder) or not (folder / STAGE_FILE).is_file():
            continue
        record = json.loads((folder / STAGE_FILE).read_text())
        record["path"] = str(folder)
        record["bytes"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        found.append(record)
    return sorted(found, key=lambda r: r.get("created", ""))


def format_stage_list(records: list[dict[str, Any]]) -> str:
    """The listing printed by ``python -m orchestrator.video_pipeline --list``."""
    if not records:
        return "no cached video stages"
    lines = []
    for r in records:
        counts = ", ".join(f"{k} {v}" for k, v in r["counters"].items())
        params = " ".join(f"{k}={v}" for k, v in r["params"].items())
        lines.append(f"{r['key']}  {r['bytes'] / 2**20:8.1f} MB  {r['created']}  computed in {r['seconds']:.1f} s\n"
                     f"    params: {params}\n    inputs: {' '.join(r['inputs'])}\n    {counts}\n    {r['path']}")
    return "\n".join(lines)
