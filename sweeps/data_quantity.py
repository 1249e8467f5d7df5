#!/usr/bin/env python
"""Data-quantity sweep: how much pretraining data contrastive learning needs (Cole et al.
2022, "When does contrastive visual representation learning work?", Sec. 4.1).

Pretrains on nested, fixed subsets of the pretraining set (``pretrain_fraction``: the first
ceil(f x N) images of one permutation drawn by ``pretrain_subset_seed``, the same for every
trial seed; Cole et al.'s 50k ... 1M subsets) and scores the linear probe on the whole
labelled set and on a few labelled images per class, frozen (``probe/linear_top1_at_<N>``)
and fine-tuned end to end (``probe/finetune_top1_at_<N>``): the label-efficiency curves.
Every trial is a child run in MLflow. A finished run's checkpoints can be scored with the
fine-tuning probe afterwards (README, "Fine-tuning at N labels").

    python sweeps/data_quantity.py                                # laptop, embedded defaults
    python sweeps/data_quantity.py --fractions 0.1 0.5 1 --labels-per-class 1,10,100
    python sweeps/data_quantity.py --study                        # 0.25, 0.5, 1; seeds 0 1 2; verdict
    python sweeps/data_quantity.py --set data.pretrain=image-folder --set data.pretrain.root=/data/imagenet
"""
import sys
from pathlib import Path

# This repository first on sys.path: its `datasets/` package shares its name with
# Hugging Face's, which may be installed in site-packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray import tune  # noqa: E402

from orchestrator.cli import run_cli  # noqa: E402
from orchestrator.study import SMALL_PRETRAIN_OBJECTS, SMALL_REGIME, Claim, Study  # noqa: E402

DEFAULT_FRACTIONS = [0.25, 0.5, 1.0]
DEFAULT_LABELS_PER_CLASS = "5,25"

# The study (--study): the small regime (orchestrator.study.SMALL_REGIME: 32 px, plain
# background, tau 0.1, K = 128) on twice the crop study's generated objects, so that the
# quarter set (200 images) still holds more images than MoCo's queue. Every arm trains the
# same epochs (a smaller set takes fewer steps), as Cole et al.'s subsets do; not yet timed.
STUDY_SETTINGS = SMALL_REGIME | SMALL_PRETRAIN_OBJECTS | {
    "data.pretrain.train_per_class": 200,  # 800 images; the arms keep 200, 400 and 800
    "epochs": 40,  # 12 steps an epoch on the whole set, 3 on the quarter
    "invariances": "viewpoint",  # the learning gate's RIS
    "probes": "linear,finetune",
}
# Sec. 4.1: "there is little benefit beyond 500k pretraining images" (the 500k and 1M curves
# within 1-2 points): half the set beats a quarter, and the whole set is within 2 points of
# half (an equivalence claim, orchestrator.study.Claim.margin).
STUDY = Study(
    knob="pretrain_fraction",
    arms=("0.25", "0.5", "1"),
    claims=(
        Claim("half over a quarter", "probe/linear_top1", "0.5", "0.25"),
        Claim("whole within 2 points of half", "probe/linear_top1", "1", "0.5", margin=2.0),
    ),
    settings=STUDY_SETTINGS,
    loss_margin=0.5,  # the image studies' margin (crop scale, dataset bias, transfer reuse)
)


def options(group):
    group.add_argument("--fractions", nargs="+", type=float, default=None, metavar="F",
                       help=f"pretraining fractions in (0, 1] (default: {DEFAULT_FRACTIONS}; with --study, "
                            f"the study's arms {', '.join(STUDY.arms)})")
    group.add_argument("--labels-per-class", default=DEFAULT_LABELS_PER_CLASS, metavar="N,N",
                       help="labelled images per class of the label-efficiency probes (default: %(default)s)")


def search_space(args):
    fractions = args.fractions or ([float(a) for a in STUDY.arms] if getattr(args, "study", False)
                                   else DEFAULT_FRACTIONS)
    per_class = {"labels_per_class": args.labels_per_class}
    return {"pretrain_fraction": tune.grid_search(list(fractions)),
            "probes": {"linear": dict(per_class), "finetune": dict(per_class)}}


if __name__ == "__main__":
    sys.exit(run_cli("data_quantity", __doc__, options, search_space, study=STUDY))
