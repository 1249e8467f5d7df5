"""Benchmark: RIS at GOT-10k's scale (the occlusion set), time and peak memory.

GOT-10k's training split holds about 10,000 sequences; the occlusion set cuts one crop per
distinct visible-ratio level out of each (``datasets/got10k.py``), a handful per
sequence, and each sequence is its own target and trajectory. So the shape differs from
ALOI's (``bench_ris``): ten times the targets, a few samples each. Same features (ReLU'd
random projections of a target code plus a level code), same reference loop, timed on a
subset of targets and extrapolated linearly (said plainly in the output).

    python -m benchmarks.bench_ris_got10k [--sequences 10000] [--levels 6]
    python -m benchmarks.run ris_got10k
"""
from __future__ import annotations

import argparse

from benchmarks import bench_ris
from trainables.invariance import RIS_SIGN_RULES

# GOT-10k train: 9,335 sequences; visible-ratio levels present per sequence: a few of 9.
SEQUENCES = 10_000
LEVELS = 6


def run(sequences: int = SEQUENCES, levels: int = LEVELS, units: int = 2048, loop_targets: int = 200,
        repeats: int = 3, seed: int = 0, sign: str = "per_target") -> dict:
    result = bench_ris.run(objects=sequences, views=levels, units=units, loop_targets=loop_targets,
                           repeats=repeats, seed=seed, sign=sign)
    return {"scale": f"GOT-10k: {sequences} sequences x {levels} visibility levels"} | result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=SEQUENCES)
    parser.add_argument("--levels", type=int, default=LEVELS)
    parser.add_argument("--units", type=int, default=2048)
    parser.add_argument("--loop-targets", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sign", choices=RIS_SIGN_RULES, default="per_target")
    args = parser.parse_args(argv)
    return run(args.sequences, args.levels, args.units, args.loop_targets, args.repeats, sign=args.sign)


if __name__ == "__main__":
    main()
