#!/usr/bin/env python
"""Track-threshold sweep: how the unsupervised tracks' threshold trades pairs for precision
(paper Sec. 5 and Appendix B: "we only consider tracks that have a score above a chosen
threshold").

Trains the Region Tracker once per threshold on the same frames, proposals and region
features (cached stages; only track linking is recomputed per threshold), then scores
each representation (RIS, linear probe). Every trial logs ``tracks/pairs`` and, on the
synthetic videos (exact boxes), ``tracks/precision``, ``tracks/recall`` and
``tracks/chance_precision``. Thresholds are per-step track scores in [0, 1)
(``datasets.video.tracks``).

    python sweeps/track_threshold.py                               # laptop, embedded defaults
    python sweeps/track_threshold.py --thresholds 0.1 0.2 0.3 --set method.frame_gap=2
    python sweeps/track_threshold.py --set data.video=video --set data.video.root=/data/TrackingNet \\
        --set method.tracker_weights=/runs/baseline/checkpoint.pt --preset paper
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's `datasets`, not Hugging Face's

from ray import tune  # noqa: E402

from orchestrator.cli import run_cli  # noqa: E402
from orchestrator.paper_tables import TABLE3, TABLE4  # noqa: E402


def options(group):
    group.add_argument("--thresholds", nargs="+", type=float, default=[0.15, 0.17, 0.19], metavar="T",
                       help="per-step track score thresholds (default: %(default)s)")


def search_space(args):
    return {"method": tune.grid_search([{"name": "region_tracker", "track_threshold": t} for t in args.thresholds])}


if __name__ == "__main__":
    sys.exit(run_cli("track_threshold", __doc__, options, search_space, tables=(TABLE4, TABLE3)))
