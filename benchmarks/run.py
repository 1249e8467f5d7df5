"""Run the project's benchmarks and collect their figures.

Every module ``benchmarks/bench_<name>.py`` exposing ``run() -> dict`` is a benchmark.

    python -m benchmarks.run            # all of them
    python -m benchmarks.run ris demo   # bench_ris and bench_demo only

Each result is printed as a table and all of them are written to
``benchmarks/results/latest.json``. The exit status is 1 if any benchmark failed.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import pkgutil
import platform
import sys
import traceback
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCHMARKS_DIR / "results" / "latest.json"
PREFIX = "bench_"


def available() -> list[str]:
    """Names of the benchmarks, ``ris`` for ``bench_ris.py``, sorted."""
    return sorted(
        info.name[len(PREFIX) :]
        for info in pkgutil.iter_modules([str(BENCHMARKS_DIR)])
        if info.name.startswith(PREFIX)
    )


def select(names: list[str]) -> list[str]:
    """The benchmarks to run: all when ``names`` is empty; ``bench_x`` and ``x`` both work."""
    known = available()
    if not names:
        return known
    chosen = [name.removeprefix(PREFIX).removesuffix(".py") for name in names]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(known)} "
            f"(modules {BENCHMARKS_DIR}/{PREFIX}*.py)"
        )
    return list(dict.fromkeys(chosen))


def run_one(name: str) -> dict:
    """Import ``benchmarks.bench_<name>`` and call its ``run()``."""
    module = importlib.import_module(f"benchmarks.{PREFIX}{name}")
    run = getattr(module, "run", None)
    if not callable(run):
        raise TypeError(f"{module.__file__} has no run() function")
    result = run()
    if not isinstance(result, dict):
        raise TypeError(f"{module.__file__}: run() returned {type(result).__name__}, not dict")
    return result


def format_table(name: str, result: dict) -> str:
    """A two-column table of one benchmark's figures."""
    rows = [(str(key), _format_value(value)) for key, value in result.items()]
    width = max([len(key) for key, _ in rows] + [len("metric")])
    lines = [f"== {name} ==", f"{'metric':<{width}}  value", f"{'-' * width}  -----"]
    lines += [f"{key:<{width}}  {value}" for key, value in rows]
    return "\n".join(lines)


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _jsonable(value):
    """numpy scalars and arrays, paths and the like as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run benchmarks/bench_*.py and collect results.")
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {available()})"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results file")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    results, failed = {}, []
    for name in select(args.names):
        print(f"running benchmark {name} ...", flush=True)
        try:
            results[name] = run_one(name)
        except Exception as error:  # one broken benchmark must not hide the others
            traceback.print_exc()
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            failed.append(name)
        print(format_table(name, results[name]), flush=True)

    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, "-m", "benchmarks.run", *argv]),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    print(f"wrote {args.output}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
