#!/usr/bin/env python
"""Task-granularity sweep: is the supervised minus self-supervised gap larger for fine labels
than for coarse ones? (Cole et al. 2022, "When does contrastive visual representation
learning work?", Sec. 4.4, Fig. 6.)

Pretrains each method (supervised on the finest labels, and MoCo v2 by default) on a set
with a label hierarchy, then fits the linear probe at every level of it (the `hierarchy`
probe: ``probe/hierarchy_<rank>_top1``, and ``probe/hierarchy_drop``, the coarsest level's
top-1 minus the finest's). The embedded set is ``synthetic-hierarchy``: shape family >
shape > colour variant, in iNat21's layout; a real iNat21 root (train.json, val.json and
the train/ and val/ folders) is read the same way.

    python sweeps/task_granularity.py                          # supervised vs mocov2, 1 seed
    python sweeps/task_granularity.py --methods supervised simclr --seeds 0 1
    python sweeps/task_granularity.py --study                  # supervised vs mocov2, seeds 0 1 2, verdict
    python sweeps/task_granularity.py --preset paper --inat21-root /data/inat21 \\
        --set probes.hierarchy.ranks=kingdom,phylum,class,order,family,genus,species \\
        --set probes.hierarchy.train_split=train_mini
"""
import sys
from pathlib import Path

# This repository first on sys.path: its `datasets/` package shares its name with
# Hugging Face's, which may be installed in site-packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray import tune  # noqa: E402

from orchestrator.cli import run_cli  # noqa: E402
from orchestrator.study import SMALL_REGIME, Claim, Study  # noqa: E402
from trainables.probes.hierarchy import DROP, rank_metric  # noqa: E402

METHODS = ("supervised", "mocov2")
# The contrastive methods' settings of the small regime (orchestrator.study.SMALL_REGIME),
# set per method: the supervised arm has no temperature or queue.
CONTRASTIVE = {"temperature": 0.1, "queue_size": 128}

# The study (--study): the small regime's run settings (32 px, 2 CPUs, last-epoch checkpoint,
# RIS on 8 turntable objects for the gate), pretraining on the hierarchy set's 960 training
# images on a plain background (clutter lets MoCo tell images apart by their backgrounds),
# 15 steps an epoch. Not piloted: the epochs are the crop study's ~300 steps.
STUDY_SETTINGS = {k: v for k, v in SMALL_REGIME.items() if not k.startswith(("method.", "data.probe."))} | {
    "epochs": 20,
    "invariances": "viewpoint",  # the learning gate's RIS
    "probes": "hierarchy",
    "data.pretrain.background": "plain",
    "data.hierarchy.background": "plain",
}
# Fig. 6: supervised and SimCLR are close at the kingdom level and SimCLR falls behind as the
# labels get finer. The gap growing is a difference of differences,
#   (sup_fine - ssl_fine) - (sup_coarse - ssl_coarse) = drop_ssl - drop_sup,
# with drop = coarsest top-1 - finest top-1 of one run: a paired claim on the drop. The gate
# reads the middle level (the shape, what synthetic-objects' linear probe asks); the
# supervised arm's loss is held to ln(C), C its root's classes (species here), its guessing loss.
STUDY = Study(
    knob="method",
    arms=METHODS,
    claims=(
        Claim("supervised minus SSL gap grows, coarsest to finest", DROP, "mocov2", "supervised"),
        Claim("supervised beats SSL at the finest level", rank_metric("species"), "supervised", "mocov2"),
    ),
    probe=rank_metric("genus"),
    settings=STUDY_SETTINGS,
    loss_margin=0.5,
    class_arms=("supervised",),
)


def options(group):
    group.add_argument("--methods", nargs="+", default=list(METHODS),
                       help="methods compared (default: %(default)s; e.g. supervised simclr)")
    group.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default: %(default)s)")
    group.add_argument("--inat21-root", default="",
                       help="an iNat21 root (train.json, val.json, train/, val/) to pretrain on and probe "
                            "(default: the synthetic-hierarchy set)")


def method_option(name):
    from trainables.methods import METHODS as REGISTRY

    fields = {f for f in REGISTRY.get(name).__dataclass_fields__}
    return {"name": name} | {k: v for k, v in CONTRASTIVE.items() if k in fields}


def search_space(args):
    seeds = tune.grid_search(list(args.seeds)) if len(args.seeds) > 1 else args.seeds[0]
    # Grids of one option: an option naming another source starts from that source's
    # defaults (orchestrator.search), not from the preset's synthetic-objects settings.
    data = ({"source": "image-folder", "root": args.inat21_root} if args.inat21_root
            else {"source": "synthetic-hierarchy"})
    return {
        "method": tune.grid_search([method_option(m) for m in args.methods]),
        "seed": seeds,
        "data": {"pretrain": tune.grid_search([data]), "hierarchy": tune.grid_search([dict(data)])},
        "invariances": {},
        "probes": {"hierarchy": {}},
    }


if __name__ == "__main__":
    sys.exit(run_cli("task_granularity", __doc__, options, search_space, study=STUDY))
