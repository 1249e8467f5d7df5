#!/usr/bin/env python
"""Crop-scale sweep: how aggressive cropping trades invariances (paper Sec. 4.2).

Pretrains once per RandomResizedCrop area range (lower bounds by default 0.08, 0.2, 0.5
and 0.9, upper bound 1.0; or any list of (min, max) pairs), then scores each
representation's viewpoint, illumination-direction and illumination-colour invariance
(Top-K RIS) and its linear probe top-1. Every trial is a child run in MLflow.

    python sweeps/crop_scale.py                                   # laptop, embedded defaults
    python sweeps/crop_scale.py --crop-scale-mins 0.2 0.5 --set epochs=5
    python sweeps/crop_scale.py --crop-scales 0.08:0.5 0.5:1.0    # coupled (min, max) pairs
    python sweeps/crop_scale.py --study                           # the study: 0.4 vs 0.9, seeds 0 1 2, verdict
    ray job submit --working-dir . -- python sweeps/crop_scale.py --preset paper \\
        --set data.pretrain=image-folder --set data.pretrain.root=/data/imagenet \\
        --set data.aloi=aloi --set data.aloi.root=/data/aloi --storage-path s3://bucket/runs
"""
import sys
from pathlib import Path

# This repository first on sys.path: its `datasets/` package shares its name with
# Hugging Face's, which may be installed in site-packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray import tune  # noqa: E402

from orchestrator.cli import run_cli  # noqa: E402
from orchestrator.study import SMALL_PRETRAIN_OBJECTS, SMALL_REGIME, Claim, Study  # noqa: E402

# The study (--study): the small regime (orchestrator.study.SMALL_REGIME, the learning test's:
# 32 px, plain background, tau 0.1, K = 128) for 40 epochs of 6 steps, scoring the four
# invariances the paper's crop-scale claim is about.
STUDY_SETTINGS = SMALL_REGIME | SMALL_PRETRAIN_OBJECTS | {
    "epochs": 40,  # 6 steps an epoch, 240 steps
    "invariances": "occlusion,viewpoint,illumination_direction,illumination_color",
    "probes": "linear",
}
# Sec. 4 and Table 1: aggressive crops (a small minimum area) buy occlusion invariance and
# cost viewpoint and illumination invariance. The aggressive arm is 0.4, not MoCo v2's 0.2:
# at 32 px and 240 steps crops down to 0.2 leave the loss at 4.39 (ln 129 = 4.86), 0.4 at
# 4.07, while both beat random init on the probe and viewpoint RIS (BENCHMARKS.md, "Settings
# that learn"); a harder pretext task keeps its loss higher, hence the 0.5-nat loss margin.
STUDY = Study(
    knob="method.crop_scale_min",
    arms=("0.4", "0.9"),
    claims=(
        Claim("occlusion", "ris/occlusion/top10", "0.4", "0.9"),
        Claim("viewpoint", "ris/viewpoint/top10", "0.9", "0.4"),
        Claim("illumination direction", "ris/illumination_direction/top10", "0.9", "0.4"),
        Claim("illumination colour", "ris/illumination_color/top10", "0.9", "0.4"),
    ),
    settings=STUDY_SETTINGS,
    loss_margin=0.5,
)
DEFAULT_MINS = [0.08, 0.2, 0.5, 0.9]


def crop_pair(text):
    lo, sep, hi = text.partition(":")
    if not sep:
        raise ValueError(text)
    return float(lo), float(hi)


def options(group):
    group.add_argument("--crop-scale-mins", nargs="+", type=float, default=None, metavar="S",
                       help=f"lower bounds of the crop area (default: {DEFAULT_MINS}; with --study, "
                            f"the study's arms {', '.join(STUDY.arms)})")
    group.add_argument("--crop-scale-max", type=float, default=1.0, metavar="S",
                       help="upper bound of the crop area (default: %(default)s)")
    group.add_argument("--crop-scales", nargs="+", type=crop_pair, default=None, metavar="MIN:MAX",
                       help="(min, max) pairs instead of the two options above, e.g. 0.08:0.5 0.5:1.0")


def search_space(args):
    if args.crop_scales:
        return {"method": tune.grid_search(
            [{"crop_scale_min": lo, "crop_scale_max": hi} for lo, hi in args.crop_scales])}
    mins = args.crop_scale_mins or ([float(a) for a in STUDY.arms] if getattr(args, "study", False)
                                    else DEFAULT_MINS)
    return {"method": {"crop_scale_min": tune.grid_search(list(mins)),
                       "crop_scale_max": args.crop_scale_max}}


if __name__ == "__main__":
    sys.exit(run_cli("crop_scale", __doc__, options, search_space, study=STUDY))
