"""Pretraining learns: MoCo v2 beats its own random initialisation on held-out images.

The production path (one Ray Train run of `train_loop_per_worker`) against the very
weights it starts from, both scored by the same linear probe on held-out instances and
the same RIS objects. The setting is `benchmarks.bench_learning.QUICK_CHANGES`, the small
one in which MoCo learns within minutes on 2 CPU cores, with each test's training settings
below; the figures behind the thresholds (three seeds, and what clutter and aggressive
crops do) are in BENCHMARKS.md, "Does pretraining learn?".
"""
from __future__ import annotations

import math

import pytest
import torch

from benchmarks import bench_learning
from trainables.pretrain import build_model

pytestmark = pytest.mark.cpu_bound

# MoCo trains 240 steps of 32 images at lr 0.06 (20 epochs of 12 steps): half the images of
# 240 steps of 64 at lr 0.03, for as large a margin (AMD EPYC, seed 0: +8.7 against +5.5;
# seeds 1 and 2: +1.8 and +8.5, where 64 images a step gave +2.2 and +7.5 on a Xeon).
# BENCHMARKS.md, "Half the images: the MoCo learning test".
MOCO_TRAINING = {"batch_size": 32, "lr": 0.06, "epochs": 20}
# Seed 0 (the default) measured +8.7 points on 600 held-out images, 4 classes (chance 25 %),
# and +15.3 over the BN-recalibrated initialisation (AMD EPYC, 2026-12-07; CPU training
# here is deterministic per machine, but float rounding differs between CPUs); one image is
# 0.17 points. At this tiny budget the margin depends on the initialisation (seed 1's
# random features are 6.5 points stronger), which is why the seed is pinned here.
MIN_PROBE_MARGIN_POINTS = 5.0
# Viewpoint RIS rose by 11.8, 15.5 and 15.2 points over seeds 0, 1 and 2, and by 26.7 over
# the BN-recalibrated initialisation (seed 0); 240 steps of 64 gave +16.7 (Xeon) and +15.2
# (AMD) at seed 0.
MIN_VIEWPOINT_RIS_GAIN_POINTS = 8.0
# The supervised reference in the same setting (labels, seed 0, AMD EPYC): 43.83 -> 53.50,
# +9.7 in 240 steps of 64; 43.83 -> 53.33, +9.5 in 120 (`python -m benchmarks.bench_learning
# --quick --set method=supervised --set epochs=20`), so the test trains 120. MoCo's halved
# batch at lr 0.06 does not suit it: -4.7 in 240 steps of 32 (loss 1.34 against ln 4 = 1.39).
MIN_SUPERVISED_PROBE_MARGIN_POINTS = 5.0
SUPERVISED_TRAINING = {"epochs": 20}


def moco_config(data_cache):
    return bench_learning.trial_config(
        "default", bench_learning.QUICK_CHANGES | MOCO_TRAINING | {"seed": 0, "data_cache": str(data_cache)})


@pytest.fixture(scope="module")
def random_init(data_cache):
    """The evaluation of seed 0's initial backbone, the baseline of both tests: MoCo's and
    the supervised reference's models build the same backbone first from the same seed
    (checked in the supervised test), and the evaluation reads nothing of the method."""
    return bench_learning.random_init_metrics(moco_config(data_cache))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pretrained_encoder_beats_its_random_initialisation_on_held_out_images(ray_session, data_cache, random_init):
    config = moco_config(data_cache)
    untrained = random_init
    calibrated = bench_learning.random_init_metrics(config, recalibrate_bn=True)
    trained = bench_learning.pretrained_metrics(config)
    summary = {key: (round(untrained[key], 2), round(calibrated[key], 2), round(trained[key], 2))
               for key in ("probe/linear_top1", "ris/viewpoint/top10")}

    # The contrastive task itself was learned: well below guessing among the K + 1 keys.
    assert trained["pretrain/loss"] < math.log(config.method.queue_size + 1) - 1.0, trained
    # Against the initial weights as they are, and with their BN statistics re-estimated on
    # the pretraining images (so the margin is not BN calibration).
    for baseline in (untrained, calibrated):
        margin = trained["probe/linear_top1"] - baseline["probe/linear_top1"]
        assert margin >= MIN_PROBE_MARGIN_POINTS, f"probe (random init, recalibrated, pretrained): {summary}"
        gain = trained["ris/viewpoint/top10"] - baseline["ris/viewpoint/top10"]
        assert gain >= MIN_VIEWPOINT_RIS_GAIN_POINTS, f"(random init, recalibrated, pretrained): {summary}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_supervised_reference_beats_its_random_initialisation_on_held_out_images(ray_session, data_cache,
                                                                               random_init):
    """`method=supervised` (the paper's "Sup." rows) learns through the same Train path."""
    config = bench_learning.trial_config("default", bench_learning.quick_changes(
        {"seed": 0, "data_cache": str(data_cache), "method": "supervised"} | SUPERVISED_TRAINING))
    trained = bench_learning.pretrained_metrics(config)
    # The shared baseline is this run's initial backbone: the same weights, and the same
    # evaluation settings (only the method's keys and the training settings differ).
    moco = moco_config(data_cache)
    initial = {name: trial.method.backbone(build_model(trial)).state_dict() for name, trial in
               (("supervised", config), ("mocov2", moco))}
    assert initial["supervised"].keys() == initial["mocov2"].keys()
    assert all(torch.equal(tensor, initial["mocov2"][key]) for key, tensor in initial["supervised"].items())

    def evaluation_settings(trial):
        training = MOCO_TRAINING.keys() | SUPERVISED_TRAINING.keys()
        return {k: v for k, v in trial.flat().items() if not k.startswith("method") and k not in training}

    assert evaluation_settings(config) == evaluation_settings(moco)
    margin = trained["probe/linear_top1"] - random_init["probe/linear_top1"]
    assert margin >= MIN_SUPERVISED_PROBE_MARGIN_POINTS, (random_init["probe/linear_top1"], trained["probe/linear_top1"])
