"""`make test`: the suite as two pytest processes side by side, on one machine.

One process runs the tests on the session's Ray instance (the `ray_session` mark, set by
tests/conftest.py), the other every other test. A Ray test spends much of its time waiting
on process starts and Train's polls, a core the Ray-free tests (and the cluster tests,
which start Ray clusters of their own) then use. Each process is an ordinary pytest
session: one Ray instance in all, its own summary and slowest tests. Lines are prefixed
with the process's name; the exit status is the worse of the two.

    python -m tests.parallel [pytest args ...]
"""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SELECTIONS = {"ray": "ray_session", "rest": "not ray_session"}


def relay(name: str, process: subprocess.Popen, lock: threading.Lock) -> None:
    for line in process.stdout:
        with lock:
            sys.stdout.write(f"[{name}] {line}")
            sys.stdout.flush()


def main(args: list[str]) -> int:
    lock = threading.Lock()
    processes, relays = {}, []
    for name, selection in SELECTIONS.items():
        processes[name] = subprocess.Popen([sys.executable, "-m", "pytest", "-m", selection, *args], cwd=REPO_ROOT,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        relays.append(threading.Thread(target=relay, args=(name, processes[name], lock)))
        relays[-1].start()
    codes = {name: process.wait() for name, process in processes.items()}
    for thread in relays:
        thread.join()
    # pytest's exit 5 is "no tests collected": a selection an argument emptied, not a failure.
    failed = {name: code for name, code in codes.items() if code not in (0, 5)}
    print(f"tests.parallel: {', '.join(f'{n} exited {c}' for n, c in codes.items())}", flush=True)
    return max(failed.values(), default=0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
