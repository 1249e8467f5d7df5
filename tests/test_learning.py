"""Pretraining learns: MoCo v2 beats its own random initialisation on held-out images.

The production path (one Ray Train run of `train_loop_per_worker`) against the very
weights it starts from, both scored by the same linear probe on held-out instances and
the same RIS objects. The setting is `benchmarks.bench_learning.QUICK_CHANGES`, the small
one in which MoCo learns within minutes on 2 CPU cores; the figures behind the thresholds
(three seeds, and what clutter and aggressive crops do) are in BENCHMARKS.md, "Does
pretraining learn?".
"""
from __future__ import annotations

import math

import pytest
import torch

from benchmarks import bench_learning
from trainables.pretrain import build_model

pytestmark = pytest.mark.cpu_bound

# Seed 0 (the default) measured +9.0 points on 600 held-out images, 4 classes (chance 25 %)
# on an Intel Xeon and +5.5 on an AMD EPYC (the same on two runs: CPU training here is
# deterministic per machine, but float rounding differs between CPUs); one image is 0.17
# points. Against the BN-recalibrated initialisation: +12.2 (AMD). At this tiny budget the
# margin depends on the initialisation (Xeon, seeds 1 and 2: +2.2 and +7.5), which is why
# the seed is pinned here.
MIN_PROBE_MARGIN_POINTS = 5.0
# Viewpoint RIS rose by 14.7, 16.2 and 22.3 points over seeds 0, 1 and 2 (Xeon), by 15.2
# (AMD, seed 0), and by 30.1 over the BN-recalibrated initialisation (AMD, seed 0), under
# the retired per-unit sign rule; under the default per-target rule by 16.7 and 31.7
# (Xeon, seed 0, 2026-12-06; probe +10.3 and +17.0).
MIN_VIEWPOINT_RIS_GAIN_POINTS = 8.0
# The supervised reference in the same setting (labels, seed 0, AMD EPYC): 43.83 -> 53.50,
# +9.7 in 240 steps; 43.83 -> 53.33, +9.5 in 120 (`python -m benchmarks.bench_learning --quick
# --set method=supervised --set epochs=20`), so the test trains 120.
MIN_SUPERVISED_PROBE_MARGIN_POINTS = 5.0
SUPERVISED_EPOCHS = 20


def moco_config(data_cache):
    return bench_learning.trial_config(
        "default", bench_learning.QUICK_CHANGES | {"seed": 0, "data_cache": str(data_cache)})


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
        {"seed": 0, "data_cache": str(data_cache), "method": "supervised", "epochs": SUPERVISED_EPOCHS}))
    trained = bench_learning.pretrained_metrics(config)
    # The shared baseline is this run's initial backbone: the same weights, and the same
    # evaluation settings (only the method's keys and the training length differ).
    moco = moco_config(data_cache)
    initial = {name: trial.method.backbone(build_model(trial)).state_dict() for name, trial in
               (("supervised", config), ("mocov2", moco))}
    assert initial["supervised"].keys() == initial["mocov2"].keys()
    assert all(torch.equal(tensor, initial["mocov2"][key]) for key, tensor in initial["supervised"].items())

    def evaluation_settings(trial):
        return {k: v for k, v in trial.flat().items() if not k.startswith("method") and k != "epochs"}

    assert evaluation_settings(config) == evaluation_settings(moco)
    margin = trained["probe/linear_top1"] - random_init["probe/linear_top1"]
    assert margin >= MIN_SUPERVISED_PROBE_MARGIN_POINTS, (random_init["probe/linear_top1"], trained["probe/linear_top1"])
