"""Benchmark: wall time of `make demo`'s job, `python sweeps/crop_scale.py` with no
arguments, from an empty data cache, split into data generation and the sweep itself.

It runs in a fresh temporary folder (its own mlflow.db and ray_results) and checks what
the demo promises: four child runs, each with the RIS keys, the probe and the loss per
epoch. Then it rescores every trial's final checkpoint under every RIS sign rule and
local-rate reading (`ris_sign`, `ris_local_rate`: trainables.invariance; `orchestrator.score`,
features extracted once and cached) to show how much each choice moves the demo's scores.

    python -m benchmarks.bench_demo
    python -m benchmarks.run demo
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import command_line, machine
from datasets.invariance_sets import INVARIANCES

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = [sys.executable, str(REPO_ROOT / "sweeps" / "crop_scale.py")]
REQUIRED = [f"ris/{f}/top{k}" for f in INVARIANCES for k in (10, 25)] + [
    "probe/linear_top1", "probe/voc07_map", "probe/voc07_boxes_map", "pretrain/loss"]
GENERATE = """
from orchestrator.config import preset
from orchestrator.sweep import prepare_data
if __name__ == "__main__":
    prepare_data([preset("default")])
"""


def _child_runs(db: Path) -> list[dict]:
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking.keys import TAG_PARENT

    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    out = []
    for run in runs:
        if TAG_PARENT not in run.data.tags:
            continue
        epochs = len(client.get_metric_history(run.info.run_id, "pretrain/loss"))
        out.append({"status": run.info.status, "loss_epochs": epochs,
                    "missing": [k for k in REQUIRED if k not in run.data.metrics]})
    return out


def sign_rule_effect(db: Path, cache: str) -> dict:
    """Each trial's RIS under every sign rule and local-rate reading, from its final
    checkpoint, and the change against the default (the first of each)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.config import preset
    from orchestrator.score import score_checkpoint
    from orchestrator.tracking.keys import TAG_CHECKPOINT, TAG_PARENT
    from trainables.invariance import RIS_LOCAL_RATES, RIS_SIGN_RULES

    client = MlflowClient(f"sqlite:///{db}")
    runs = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
            if TAG_PARENT in r.data.tags and TAG_CHECKPOINT in r.data.tags]
    readings = [(sign, rate) for sign in RIS_SIGN_RULES for rate in RIS_LOCAL_RATES]
    default = f"{RIS_SIGN_RULES[0]}/{RIS_LOCAL_RATES[0]}"
    trials, deltas = {}, {}
    for run in sorted(runs, key=lambda r: r.info.run_name):
        scores = {}
        for sign, rate in readings:
            trial = preset("default").override({"data_cache": cache, "ris_sign": sign, "ris_local_rate": rate})
            metrics, _ = score_checkpoint(run.data.tags[TAG_CHECKPOINT], trial)
            scores[f"{sign}/{rate}"] = {k: round(v, 2) for k, v in metrics.items() if k.startswith("ris/")}
        trials[run.info.run_name] = scores
        for reading, values in scores.items():
            for key, value in values.items():
                deltas.setdefault(reading, {}).setdefault(key, []).append(value - scores[default][key])
    return {"trials": trials, "default": default,
            "minus_default_mean": {r: {k: round(sum(v) / len(v), 2) for k, v in sorted(d.items())}
                                   for r, d in deltas.items() if r != default},
            "minus_default_range": {r: {k: [round(min(v), 2), round(max(v), 2)] for k, v in sorted(d.items())}
                                    for r, d in deltas.items() if r != default}}


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="dssl-demo-") as tmp:
        env = {**os.environ, "DSSL_CACHE_DIR": str(Path(tmp) / "cache")}
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop("RAY_ADDRESS", None)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", GENERATE], cwd=REPO_ROOT, env=env, check=True)
        generated = time.perf_counter()
        demo = subprocess.run(DEMO, cwd=tmp, env=env, capture_output=True, text=True)
        finished = time.perf_counter()
        if demo.returncode != 0:
            raise RuntimeError(f"demo failed ({demo.returncode}):\n{demo.stdout[-3000:]}\n{demo.stderr[-3000:]}")
        children = _child_runs(Path(tmp) / "mlflow.db")
        table = demo.stdout[demo.stdout.find("Sweep "):]
        signs = sign_rule_effect(Path(tmp) / "mlflow.db", str(Path(tmp) / "cache"))
    result = {
        "machine": machine(),
        "command": command_line(),
        "data_generation_seconds": round(generated - started, 1),
        "sweep_seconds": round(finished - generated, 1),
        "demo_wall_seconds": round(finished - started, 1),
        "child_runs": len(children),
        "child_runs_complete": sum(c["status"] == "FINISHED" and not c["missing"] for c in children),
        "loss_epochs_per_run": sorted({c["loss_epochs"] for c in children}),
        "sign_rule": signs,
    }
    print(table)
    print(json.dumps(signs, indent=2))
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
