#!/usr/bin/env python
"""Methods: the paper's Table 1 (Sec. 4.1), every image method on the same data, seeds and budget.

Pretrains each registered method that learns from an image folder (MoCo v2, SimCLR, BYOL,
the supervised reference, and any a user's module registers: a method is one file) once
per seed, then scores each representation's six invariances (Top-K RIS) and its probes.
The parent run gets the RIS table in Table 1's layout, the paper's published rows
(supervised, MoCo v2, PIRL) beside it for orientation. Mean and spread over seeds need
two or more (``--seeds 0 1 2``).

    python sweeps/methods.py                                   # laptop, embedded defaults
    python sweeps/methods.py --methods mocov2 simclr --seeds 0 1 2 --set epochs=20
    python sweeps/methods.py --set optimizer=lars --set lr=0.3  # each method's own settings: --set method.*
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's `datasets`, not Hugging Face's

from ray import tune  # noqa: E402

from datasets.sources.base import IMAGE_FOLDER  # noqa: E402
from orchestrator.cli import run_cli  # noqa: E402
from trainables.methods import METHODS  # noqa: E402


def image_methods() -> list[str]:
    """The registered methods whose pretraining data is an image folder (the video methods
    read videos and have their own sweep, sweeps/video_methods.py)."""
    return [name for name in METHODS.names()
            if {role.layout for role in METHODS.get(name).roles.values()} == {IMAGE_FOLDER}]


def options(group):
    methods = image_methods()
    group.add_argument("--methods", nargs="+", default=methods, choices=methods, metavar="METHOD",
                       help=f"the methods compared (default: all of {', '.join(methods)})")
    group.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="seeds (default: %(default)s)")


def search_space(args):
    seeds = tune.grid_search(list(args.seeds)) if len(args.seeds) > 1 else args.seeds[0]
    return {"method": tune.grid_search([{"name": m} for m in args.methods]), "seed": seeds}


if __name__ == "__main__":
    sys.exit(run_cli("methods", __doc__, options, search_space))
