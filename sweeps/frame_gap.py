#!/usr/bin/env python
"""Frame-gap sweep: how far apart in time a positive pair's frames may be (paper Sec. 5,
Frame Temporal Invariance; Appendix B: pairs at least k = 40 frames apart in 60-frame
chunks).

Trains Frame Temporal Invariance (or ``--method region_tracker``) once per gap k on frame
pairs (z_i, z_{i+k}), i mod k = 0, of the same chunks, then scores each representation
(RIS, linear probe). The default grid brackets the paper's k = 40 of 60 scaled to the
synthetic videos' 20-frame chunks (13).

    python sweeps/frame_gap.py                                  # laptop, embedded defaults
    python sweeps/frame_gap.py --gaps 1 3 6 12 --method region_tracker
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this repository's `datasets`, not Hugging Face's

from ray import tune  # noqa: E402

from orchestrator.cli import run_cli  # noqa: E402
from orchestrator.paper_tables import TABLE3, TABLE4  # noqa: E402


def options(group):
    group.add_argument("--gaps", nargs="+", type=int, default=[2, 5, 13], metavar="K",
                       help="frame gaps k (default: %(default)s)")
    group.add_argument("--method", default="fti", choices=["fti", "region_tracker", "gt_tracks"],
                       help="the video method trained at each gap (default: %(default)s)")


def search_space(args):
    return {"method": tune.grid_search([{"name": args.method, "frame_gap": k} for k in args.gaps])}


if __name__ == "__main__":
    sys.exit(run_cli("frame_gap", __doc__, options, search_space, tables=(TABLE4, TABLE3)))
