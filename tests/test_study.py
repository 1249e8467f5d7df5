"""Studies (orchestrator.study): intervals, paired differences, the learning gate and the
verdicts on synthetic numbers; the study's search space; the rebuild from an MLflow store."""
from __future__ import annotations

import argparse
import importlib
import math
import random
import sys

import numpy as np
import pytest
from scipy import stats

from orchestrator.study import (
    CONTRADICTED,
    FEW_SEEDS,
    INCONCLUSIVE,
    NOT_LEARNED,
    RANDOM_INIT,
    REPRODUCED,
    TAG_STUDY,
    Claim,
    Study,
    analyse,
    keep_arms,
    learning_gate,
    paired_difference,
    t_interval,
)
from tests.conftest import REPO_ROOT

K = 128
LOW_LOSS = math.log(K + 1) - 2.0  # learned: below ln(K+1) - 1
STUDY = Study(knob="method.crop_scale_min", arms=("0.2", "0.9"),
              claims=(Claim("occlusion", "ris/occlusion/top10", "0.2", "0.9"),
                      Claim("viewpoint", "ris/viewpoint/top10", "0.9", "0.2")))


def row(arm, seed, *, epochs=40, probe=60.0, viewpoint=80.0, occlusion=50.0, loss=LOW_LOSS, **extra):
    out = {"method.crop_scale_min": arm, "seed": seed, "epochs": epochs, "method.queue_size": K,
           "status": "FINISHED", "probe/linear_top1": probe, "ris/viewpoint/top10": viewpoint,
           "ris/occlusion/top10": occlusion}
    if epochs:
        out["pretrain/loss"] = loss
    return out | extra


def random_rows(seeds=(0, 1, 2), arms=(0.2, 0.9)):
    return [row(arm, s, epochs=0, probe=40.0, viewpoint=60.0, occlusion=40.0) for arm in arms for s in seeds]


def study_rows(occlusion_02, occlusion_09, viewpoint_02=(80.0,) * 3, viewpoint_09=(81.0,) * 3, **arm_02):
    seeds = range(len(occlusion_02))
    return ([row(0.2, s, occlusion=o, viewpoint=v, **arm_02) for s, o, v in zip(seeds, occlusion_02, viewpoint_02)]
            + [row(0.9, s, occlusion=o, viewpoint=v) for s, o, v in zip(seeds, occlusion_09, viewpoint_09)]
            + random_rows(tuple(seeds)))


def verdicts(rows, study=STUDY):
    return {r.claim.name: r.verdict for r in analyse(rows, study).claims}


# -- intervals -------------------------------------------------------------------------
def test_t_interval_is_the_student_t_interval_of_the_mean():
    values = [1.0, 2.5, 2.0, 4.0, 3.1]
    interval = t_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert interval.mean == pytest.approx(np.mean(values))
    assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
    assert t_interval(list(reversed(values))) == interval  # order does not matter


def test_an_interval_needs_two_values_and_says_so():
    one = t_interval([3.0])
    assert one.half_width is None and one.low is None and one.text() == "3.00 (n=1)"
    assert t_interval([]).n == 0 and t_interval([]).text() == "-"
    assert t_interval([1.0, 3.0]).half_width == pytest.approx(stats.t.ppf(0.975, 1) * 1.0)


def test_paired_difference_uses_only_seeds_in_both_arms_and_matches_ttest_rel():
    a = {0: 10.0, 1: 12.0, 2: 11.5, 3: 9.0, 7: 50.0}
    b = {0: 8.0, 1: 11.0, 2: 8.5, 3: 8.0, 9: -50.0}
    d = paired_difference(a, b)
    assert d.seeds == (0, 1, 2, 3) and d.differences == (2.0, 1.0, 3.0, 1.0)
    test = stats.ttest_rel([10.0, 12.0, 11.5, 9.0], [8.0, 11.0, 8.5, 8.0])
    low, high = test.confidence_interval(0.95)
    assert (d.interval.low, d.interval.high) == (pytest.approx(low), pytest.approx(high))
    assert d.p_value == pytest.approx(test.pvalue)
    # Pairing matters: the same values unpaired would not give this interval.
    assert d.interval.half_width < t_interval(list(a.values())[:4]).half_width


# -- the gate --------------------------------------------------------------------------
def test_gate_passes_learned_arms():
    gate = learning_gate(study_rows((50, 51, 52), (45, 46, 47)), STUDY)
    assert all(g.passed for g in gate.values()), gate


@pytest.mark.parametrize("change, check", [
    ({"probe": 41.0}, "probe/linear_top1 41.00 is +1.00 over random init 40.00 (needs +2)"),
    ({"viewpoint": 64.0}, "ris/viewpoint/top10 64.00 is +4.00 over random init 60.00 (needs +5)"),
    ({"loss": math.log(K + 1) - 0.5}, "pretrain/loss 4.36 is not below ln(128+1) - 1 = 3.86"),
])
def test_gate_fails_each_check_on_one_seed(change, check):
    rows = study_rows((50, 51, 52), (45, 46, 47))
    rows[1] = row(0.2, 1, **({"occlusion": 51} | change))
    gate = learning_gate(rows, STUDY)
    assert gate["0.9"].passed and not gate["0.2"].passed
    assert gate["0.2"].failures == (f"seed 1: {check}",)
    result = analyse(rows, STUDY)
    assert {r.verdict for r in result.claims} == {NOT_LEARNED}
    assert all("arm 0.2: seed 1:" in r.reason for r in result.claims)


def test_gate_fails_without_a_random_init_row_or_a_loss_or_K():
    rows = [r for r in study_rows((50, 51, 52), (45, 46, 47)) if not (r["epochs"] == 0 and r["seed"] == 2)]
    assert "seed 2: no random-init probe/linear_top1 to compare with" in learning_gate(rows, STUDY)["0.2"].failures
    rows = study_rows((50, 51, 52), (45, 46, 47))
    del rows[0]["pretrain/loss"], rows[4]["method.queue_size"]
    gate = learning_gate(rows, STUDY)
    assert "seed 0: no pretrain/loss" in gate["0.2"].failures
    assert "seed 1: no method.queue_size param (K of the ln(K+1) loss bound)" in gate["0.9"].failures
    assert learning_gate([], STUDY)["0.2"].failures == ("no finished run",)


def test_gate_compares_with_the_same_seed_and_the_arms_own_random_init():
    rows = study_rows((50, 51, 52), (45, 46, 47))
    # Seed 2's random init of the 0.2 config is strong: only that seed of that arm fails.
    rows = [r for r in rows if not (r["epochs"] == 0 and r["seed"] == 2 and r["method.crop_scale_min"] == 0.2)]
    rows.append(row(0.2, 2, epochs=0, probe=59.0, viewpoint=60.0))
    gate = learning_gate(rows, STUDY)
    assert gate["0.9"].passed
    assert gate["0.2"].failures == ("seed 2: probe/linear_top1 60.00 is +1.00 over random init 59.00 (needs +2)",)


# -- verdicts --------------------------------------------------------------------------
def test_each_direction_of_the_verdict():
    # occlusion: 0.2 above 0.9 on every seed (the paper's direction); viewpoint: 0.9 below 0.2.
    rows = study_rows((50, 52, 51), (45, 46, 47), viewpoint_02=(85, 86, 88), viewpoint_09=(80, 81, 82))
    assert verdicts(rows) == {"occlusion": REPRODUCED, "viewpoint": CONTRADICTED}
    # Differences of both signs: the interval holds 0.
    rows = study_rows((50, 44, 51), (45, 49, 47), viewpoint_02=(80, 86, 81), viewpoint_09=(85, 80, 82))
    assert verdicts(rows) == {"occlusion": INCONCLUSIVE, "viewpoint": INCONCLUSIVE}


def test_expected_sign_minus_one_reads_the_claim_the_other_way():
    flipped = Study(knob=STUDY.knob, arms=STUDY.arms,
                    claims=(Claim("occlusion", "ris/occlusion/top10", "0.9", "0.2", expected_sign=-1),))
    rows = study_rows((50, 52, 51), (45, 46, 47))
    assert verdicts(rows, flipped) == {"occlusion": REPRODUCED}
    assert flipped.claims[0].direction == "0.9 < 0.2"


def test_an_equivalence_claim_needs_the_interval_inside_its_margin():
    claim = Claim("occlusion within 3", "ris/occlusion/top10", "0.2", "0.9", margin=3.0)
    assert claim.direction == "|0.2 - 0.9| < 3"
    for a, b, expected in (((50, 52, 51), (49.5, 51.8, 51.3), REPRODUCED),  # mean -0.1, interval inside +/-3
                           ((50, 52, 51), (40, 41, 42), CONTRADICTED),  # 10 apart on every seed
                           ((50, 52, 51), (48, 52, 46), INCONCLUSIVE)):  # mean 2.3, interval crosses 3
        rows = study_rows(a, b)
        equivalence = Study(knob=STUDY.knob, arms=STUDY.arms, claims=(claim,))
        result = analyse(rows, equivalence)
        d = result.claims[0].difference
        # The verdict reads the interval against the margin: recomputed from the paired t-interval.
        inside = -3 < d.interval.low and d.interval.high < 3
        assert result.claims[0].verdict == expected and inside == (expected == REPRODUCED)
    assert Study.from_json(equivalence.to_json()).claims[0].margin == 3.0
    with pytest.raises(ValueError, match="margin=-1 must be at least 0"):
        Claim("x", "probe/linear_top1", "0.2", "0.9", margin=-1)


def test_fewer_than_three_paired_seeds_is_inconclusive():
    rows = study_rows((50, 52), (45, 46), viewpoint_02=(80, 80), viewpoint_09=(85, 86))
    assert verdicts(rows) == {"occlusion": FEW_SEEDS, "viewpoint": FEW_SEEDS}
    # Three seeds in each arm, but only two shared.
    rows = study_rows((50, 52, 51), (45, 46, 47))
    rows = [r for r in rows if not (r["method.crop_scale_min"] == 0.9 and r["seed"] == 2 and r["epochs"])]
    rows.append(row(0.9, 5, occlusion=40.0))
    rows.append(row(0.9, 5, epochs=0, probe=40.0, viewpoint=60.0))
    result = analyse(rows, STUDY)
    assert result.claims[0].verdict == FEW_SEEDS and result.claims[0].difference.seeds == (0, 1)


def test_verdict_ignores_row_order_and_duplicate_runs_but_not_unfinished_ones():
    rows = study_rows((50, 52, 51), (45, 46, 47), viewpoint_02=(85, 86, 88), viewpoint_09=(80, 81, 82))
    expected = analyse(rows, STUDY)
    shuffled = rows * 2  # a resumed store may hold a trial twice
    random.Random(0).shuffle(shuffled)
    again = analyse(shuffled, STUDY)
    assert [(r.verdict, r.difference) for r in again.claims] == [(r.verdict, r.difference) for r in expected.claims]
    assert again.arms == expected.arms
    failed = rows + [row(0.9, 0, occlusion=99.0, status="FAILED")]
    assert analyse(failed, STUDY).claims == expected.claims and analyse(failed, STUDY).left_out == 1


def test_random_init_rows_form_their_own_arm():
    result = analyse(study_rows((50, 52, 51), (45, 46, 47)), STUDY)
    assert result.arms[RANDOM_INIT]["probe/linear_top1"].mean == 40.0
    assert result.arms[RANDOM_INIT]["probe/linear_top1"].n == 3  # seeds, not runs (two arms' rows each)
    assert result.arms["0.2"]["ris/occlusion/top10"].mean == pytest.approx(51.0)


def test_study_round_trips_through_json_and_refuses_unknown_arms():
    assert Study.from_json(STUDY.to_json()) == STUDY
    with pytest.raises(ValueError, match="claim 'x' names arm '0.5'"):
        Study(knob="k", arms=("0.2", "0.9"), claims=(Claim("x", "m", "0.5", "0.9"),))
    with pytest.raises(ValueError, match="expected_sign=0"):
        Claim("x", "m", "a", "b", expected_sign=0)
    assert Claim("x", "m", 0.2, "0.90").arm_a == "0.2" and Claim("x", "m", 0.2, "0.90").arm_b == "0.9"


# -- class arms, loss-only arms, claims against random init ---------------------------------
C = 4
CLASS_STUDY = Study(
    knob="method", arms=("supervised", "shuffled"),
    claims=(Claim("true beats shuffled", "probe/linear_top1", "supervised", "shuffled"),
            Claim("shuffled aligns", "analysis/first_layer_alignment", "shuffled", f"{RANDOM_INIT}@shuffled")),
    class_arms=("supervised", "shuffled"), loss_only_arms=("shuffled",), loss_margin=0.5,
    reported=("probe/block_shuffle_b8_top1",))


def class_row(method, seed, *, epochs=40, probe=60.0, alignment=0.5, loss=0.2, **extra):
    out = {"method": method, "seed": seed, "epochs": epochs, "data/pretrain_classes": C, "status": "FINISHED",
           "probe/linear_top1": probe, "ris/viewpoint/top10": 80.0 if epochs else 60.0,
           "analysis/first_layer_alignment": alignment,
           "probe/block_shuffle_b8_top1": probe - 20.0}
    if epochs:
        out["pretrain/loss"] = loss
    return out | extra


def class_rows(shuffled_probe=(40.0, 41.0, 40.5), shuffled_alignment=(0.6, 0.62, 0.61), shuffled_loss=0.5):
    rows = [class_row("supervised", s, probe=60.0 + s) for s in range(3)]
    rows += [class_row("shuffled", s, probe=p, alignment=a, loss=shuffled_loss)
             for s, (p, a) in enumerate(zip(shuffled_probe, shuffled_alignment))]
    rows += [class_row(m, s, epochs=0, probe=40.0, alignment=0.3 + 0.01 * s)
             for m in CLASS_STUDY.arms for s in range(3)]
    return rows


def test_a_class_arm_is_gated_at_ln_C_and_a_loss_only_arm_by_its_loss_alone():
    # The shuffled arm's probe is no better than random init: no failure for a loss-only arm.
    gate = learning_gate(class_rows(), CLASS_STUDY)
    assert gate["supervised"].passed and gate["shuffled"].passed, gate
    # ln(4) - 0.5 = 0.89: a loss of 1.0 is not learned, whatever the arm.
    gate = learning_gate(class_rows(shuffled_loss=1.0), CLASS_STUDY)
    assert gate["shuffled"].failures[0] == "seed 0: pretrain/loss 1.00 is not below ln(4) - 0.5 = 0.89"
    # The same rows with the supervised arm gated as usual: its probe margin is checked.
    rows = class_rows()
    rows[0]["probe/linear_top1"] = 41.0
    assert learning_gate(rows, CLASS_STUDY)["supervised"].failures == (
        "seed 0: probe/linear_top1 41.00 is +1.00 over random init 40.00 (needs +2)",)
    del rows[1]["data/pretrain_classes"]
    assert "seed 1: no data/pretrain_classes figure (C of the ln(C) loss bound)" in \
        learning_gate(rows, CLASS_STUDY)["supervised"].failures


def test_a_claim_against_an_arms_random_init_pairs_each_seed_with_its_initial_weights():
    result = analyse(class_rows(), CLASS_STUDY)
    aligns = result.claims[1]
    assert aligns.difference.seeds == (0, 1, 2)
    assert aligns.difference.differences == pytest.approx((0.3, 0.31, 0.29))  # 0.6 - 0.3, 0.62 - 0.31, 0.61 - 0.32
    assert aligns.verdict == REPRODUCED and result.claims[0].verdict == REPRODUCED
    rows = class_rows(shuffled_alignment=(0.2, 0.25, 0.22))  # below the initial weights
    assert analyse(rows, CLASS_STUDY).claims[1].verdict == CONTRADICTED
    assert "probe/block_shuffle_b8_top1" in result.arms["supervised"]  # reported per arm, without a claim
    assert Study.from_json(CLASS_STUDY.to_json()) == CLASS_STUDY
    with pytest.raises(ValueError, match="names arm 'random-init@other'"):
        Study(knob="method", arms=("a", "b"), claims=(Claim("x", "m", "a", f"{RANDOM_INIT}@other"),))
    with pytest.raises(ValueError, match="class_arms names 'c'"):
        Study(knob="method", arms=("a", "b"), claims=(), class_arms=("c",))


def test_a_study_logged_before_the_class_arms_still_reads():
    import json

    old = json.loads(STUDY.to_json())
    for name in ("class_arms", "loss_only_arms", "reported"):
        del old[name]
    assert Study.from_json(json.dumps(old)) == STUDY


# -- the study's sweep -------------------------------------------------------------------
def sweep_module(name):
    sys.path.insert(0, str(REPO_ROOT / "sweeps"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


@pytest.mark.parametrize("name, trials", [("crop_scale", 12), ("dataset_bias", 18), ("video_methods", 18),
                                          ("data_quantity", 18), ("data_quality", 30)])
def test_each_study_plans_arms_by_seeds_and_random_init_rows(name, trials):
    from orchestrator.config import check, preset
    from orchestrator.search import trials_of

    module = sweep_module(name)
    parser = argparse.ArgumentParser()
    module.options(parser)
    args = parser.parse_args([])
    args.study = True  # run_cli's flag: a sweep may default its grid to the study's arms
    base, space = module.STUDY.plan(preset("default"), module.search_space(args), {}, [0, 1, 2])
    _, configs = trials_of(base, space)
    check(configs)
    study = module.STUDY
    flats = [c.flat() for c in configs]
    cells = {(str(f[study.knob]) if not isinstance(f[study.knob], float) else f"{f[study.knob]:g}",
              f["seed"], f["epochs"]) for f in flats}
    trained = {f["epochs"] for f in flats} - {0}
    assert len(configs) == trials == len(cells) == len(study.arms) * 3 * 2 and len(trained) == 1
    assert {a for a, _, _ in cells} == set(study.arms) and {s for _, s, _ in cells} == {0, 1, 2}
    for config in configs:  # the study's settings reach every trial, arms included
        assert config.image_size == 32 and config.method.queue_size == 128 and config.method.temperature == 0.1
    # Every plain setting, including those only the arms read (the video methods' videos).
    plain = {k: v for k, v in study.settings.items() if k not in ("invariances", "probes", "epochs")}
    for flat in flats:
        assert {k: flat[k] for k in plain} == plain
    for claim in study.claims:
        assert claim.metric.startswith(("ris/", "probe/"))
        key = claim.metric.split("/")[1]
        assert any(key == p.name or key.startswith(p.name) for c in configs[:1] for p in (*c.invariances, *c.probes))


def test_the_transfer_reuse_study_plans_three_pretrainings_by_seeds_with_every_reading():
    from orchestrator.config import check, preset
    from orchestrator.search import trials_of
    from trainables.probes import PROBES

    module = sweep_module("transfer_reuse")
    parser = argparse.ArgumentParser()
    module.options(parser)
    args = parser.parse_args([])
    args.study, args.seeds = True, [0, 1, 2]
    study = module.STUDY
    base, space = study.plan(preset("default"), module.search_space(args), {}, [0, 1, 2])
    _, configs = trials_of(base, space)
    check(configs)
    cells = {(c.method.name, c.seed, c.epochs) for c in configs}
    assert len(configs) == len(cells) == 3 * 3 * 2
    assert {m for m, _, _ in cells} == set(study.arms) == {"supervised", "supervised_random_labels", "mocov2"}
    plain = {k: v for k, v in study.settings.items() if k not in ("invariances", "probes", "epochs")}
    for config in configs:  # every setting reaches every trial; MoCo's own only its trials
        flat = config.flat()
        assert {k: flat[k] for k in plain} == plain and config.epochs in (0, study.settings["epochs"])
        assert [p.name for p in config.probes] == ["linear", "block_shuffle", "alignment"]
        assert not config.probes[1].random_init  # the study's epochs=0 rows are the random init
        if config.method.name == "mocov2":
            assert (config.method.queue_size, config.method.temperature) == (128, 0.1)
    # Each claim's and each reported metric is one a selected part writes.
    block_sizes = configs[0].probes[1].block_sizes.split(",")
    written = {"probe/linear_top1", "analysis/first_layer_alignment",
               *(f"probe/block_shuffle_b{b}_top1" for b in block_sizes)}
    assert {c.metric for c in study.claims} | set(study.reported) <= written
    assert "alignment" in PROBES.names()
    assert set(study.class_arms) == {"supervised", "supervised_random_labels"}


def test_the_knobs_grid_keeps_only_the_arms_and_names_missing_ones():
    from ray import tune

    space = {"method": {"crop_scale_min": tune.grid_search([0.08, 0.2, 0.5, 0.9]), "crop_scale_max": 1.0}}
    assert keep_arms(space, "method.crop_scale_min", ("0.2", "0.9"))["method"]["crop_scale_min"] == \
        tune.grid_search([0.2, 0.9])
    pairs = {"method": tune.grid_search([{"crop_scale_min": 0.2, "crop_scale_max": 1.0},
                                         {"crop_scale_min": 0.5, "crop_scale_max": 1.0}])}
    from datasets.registry import ConfigError

    with pytest.raises(ConfigError, match=r"arms 0.9 of method.crop_scale_min are not in the sweep's grid \(0.2, 0.5\)"):
        keep_arms(pairs, "method.crop_scale_min", ("0.2", "0.9"))
    with pytest.raises(ConfigError, match="not swept"):
        keep_arms({"seed": 1}, "method.crop_scale_min", ("0.2", "0.9"))


def test_study_flags_on_the_command_line(monkeypatch, capsys):
    """--study plans the study (seeds 0 1 2 by default) and tags the parent; --seeds alone is refused."""
    import orchestrator.sweep
    from orchestrator.cli import run_cli

    seen = {}

    def fake_run_sweep(base, space, settings):
        seen.update(space=space, tags=settings.tags)
        raise KeyboardInterrupt

    monkeypatch.setattr(orchestrator.sweep, "run_sweep", fake_run_sweep)
    module = sweep_module("crop_scale")
    args = ("crop_scale", module.__doc__, module.options, module.search_space)
    assert run_cli(*args, argv=["--study"], study=module.STUDY) == 130
    assert seen["space"]["seed"] == {"grid_search": [0, 1, 2]}
    assert seen["space"]["epochs"] == {"grid_search": [40, 0]}
    assert Study.from_json(seen["tags"][TAG_STUDY]) == module.STUDY
    assert run_cli(*args, argv=["--study", "--seeds", "4", "5", "--set", "epochs=7"], study=module.STUDY) == 130
    assert seen["space"]["seed"] == {"grid_search": [4, 5]} and seen["space"]["epochs"] == {"grid_search": [7, 0]}
    assert run_cli(*args, argv=[], study=module.STUDY) == 130 and TAG_STUDY not in seen["tags"]
    assert seen["space"]["method"]["crop_scale_min"] == {"grid_search": [0.08, 0.2, 0.5, 0.9]}
    with pytest.raises(SystemExit):
        run_cli(*args, argv=["--seeds", "1"], study=module.STUDY)
    assert "--seeds needs --study" in capsys.readouterr().err
    # A sweep with its own --seeds keeps its default without --study.
    bias = sweep_module("dataset_bias")
    bias_args = ("dataset_bias", bias.__doc__, bias.options, bias.search_space)
    assert run_cli(*bias_args, argv=[], study=bias.STUDY) == 130
    assert seen["space"]["seed"] == {"grid_search": [0, 1]}
    assert run_cli(*bias_args, argv=["--study"], study=bias.STUDY) == 130
    assert seen["space"]["seed"] == {"grid_search": [0, 1, 2]}
    assert seen["space"]["data"]["pretrain"]["grid_search"][0]["source"] == "synthetic-coco-scenes"
    assert len(seen["space"]["data"]["pretrain"]["grid_search"]) == 3


# -- random initialisation (epochs=0) ----------------------------------------------------
def test_epochs_zero_checkpoint_is_the_trained_runs_initial_weights(tmp_path):
    import torch

    from trainables.config import TrialConfig
    from trainables.pretrain import device_settings, save_initial_checkpoint, setup_training

    trial = TrialConfig(arch="resnet18", image_size=32, seed=3, epochs=0)
    assert trial.problems() == [] or all("epochs" not in p for p in trial.problems())
    save_initial_checkpoint(tmp_path / "init.pt", trial)
    saved = torch.load(tmp_path / "init.pt", weights_only=True)["model"]
    trained_start = setup_training(trial.override({"epochs": 40}), torch.device("cpu"), device_settings("cpu"))[0]
    other_seed = setup_training(trial.override({"epochs": 40, "seed": 4}), torch.device("cpu"), device_settings("cpu"))[0]
    assert saved.keys() == trained_start.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in trained_start.state_dict().items())
    assert not all(torch.equal(saved[k], v) for k, v in other_seed.state_dict().items())
    assert "epochs=-1 must be at least 0" in TrialConfig(epochs=-1).problems()[0]


def test_random_init_rows_are_named_as_such():
    from orchestrator.naming import trial_label

    knobs = ["method.crop_scale_min", "seed", "epochs"]
    assert trial_label({"method.crop_scale_min": 0.2, "seed": 1, "epochs": 0}, knobs) == "crop_min=0.2 random-init seed=1"
    assert trial_label({"method.crop_scale_min": 0.2, "seed": 1, "epochs": 40}, knobs) == "crop_min=0.2 epochs=40 seed=1"


# -- the rebuild ---------------------------------------------------------------------------
def test_rebuild_from_the_store_writes_and_prints_the_verdict(tmp_path, capsys):
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from orchestrator.study import VERDICT_FILES, main
    from orchestrator.tracking.keys import TAG_PARENT, TAG_SWEEP

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("demystify-ssl", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment, run_name="study-1", tags={TAG_SWEEP: "study-1", TAG_STUDY: STUDY.to_json()})
    rows = study_rows((50, 52, 51), (45, 46, 47), viewpoint_02=(85, 86, 88), viewpoint_09=(80, 81, 82))
    for i, r in enumerate(rows):
        child = client.create_run(experiment, run_name=f"t{i}", tags={TAG_PARENT: parent.info.run_id})
        params = [Param(k, str(r[k])) for k in ("method.crop_scale_min", "seed", "epochs", "method.queue_size")]
        metrics = [Metric(k, float(v), 0, 0) for k, v in r.items() if "/" in k]
        if "pretrain/loss" in r:  # the final epoch's loss is the one read
            metrics.append(Metric("pretrain/loss", 9.0, 0, -1))
        client.log_batch(child.info.run_id, metrics=metrics, params=params)
        client.set_terminated(child.info.run_id)

    assert main(["study-1", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "occlusion (ris/occlusion/top10, paper 0.2 > 0.9): reproduced" in out
    assert "viewpoint (ris/viewpoint/top10, paper 0.9 > 0.2): contradicted" in out
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "tables")}
    assert logged == set(VERDICT_FILES)
    text = open(client.download_artifacts(parent.info.run_id, VERDICT_FILES[0], str(tmp_path))).read()
    assert "**reproduced**" in text and "0.2: passes" in text and f"| {RANDOM_INIT} |" in text
    # By parent run id too; a run that is no study is refused by name.
    assert main([parent.info.run_id, "--tracking-uri", uri]) == 0
    plain = client.create_run(experiment, run_name="plain", tags={TAG_SWEEP: "plain"})
    assert main([plain.info.run_id, "--tracking-uri", uri]) == 2
    assert "has no dssl.study tag" in capsys.readouterr().err
    assert main(["no-such-sweep", "--tracking-uri", uri]) == 2
    assert "no sweep named 'no-such-sweep'" in capsys.readouterr().err


def test_table2_layout_keeps_random_init_rows_apart():
    from orchestrator.paper_tables import TABLE2
    from orchestrator.tables import build

    rows = [{"data.pretrain": source, "seed": s, "epochs": e, "probe/voc07_boxes_map": v + shift}
            for source, shift in (("synthetic-coco-boxes", 0.0), ("synthetic-coco-scenes", 100.0))
            for s, e, v in ((0, 40, 50.0), (1, 40, 52.0), (0, 0, 10.0), (1, 0, 12.0))]
    text = build(TABLE2, rows, ["data.pretrain", "epochs", "seed"]).markdown
    trained = next(line for line in text.splitlines() if line.startswith("| pretrain=synthetic-coco-boxes epochs=40 |"))
    untrained = next(line for line in text.splitlines() if line.startswith("| pretrain=synthetic-coco-boxes random-init |"))
    assert "51.00" in trained and "11.00" in untrained
