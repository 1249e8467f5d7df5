"""benchmarks/bench_learning.py: its trial config, and bad input rejected before any work."""
from __future__ import annotations

import pytest
import torch

from benchmarks import bench_learning
from orchestrator.config import ConfigError, preset
from trainables.pretrain import build_model


def test_trial_config_is_the_preset_with_the_benchmark_defaults_then_the_user_changes():
    config = bench_learning.trial_config("default", {"epochs": 3, "image_size": 32})
    assert (config.epochs, config.image_size) == (3, 32)
    assert config.checkpoint_every == bench_learning.DEFAULT_CHANGES["checkpoint_every"]
    assert config.lr == preset("default").lr
    with pytest.raises(ConfigError, match="crop_scale"):
        bench_learning.trial_config("default", {"method.crop_scale_min": 0.9, "method.crop_scale_max": 0.5})


def test_quick_is_the_learning_tests_setting_and_set_overrides_it(monkeypatch):
    calls = []
    monkeypatch.setattr(bench_learning, "run", lambda preset_name, changes: calls.append((preset_name, changes)))
    bench_learning.main(["--quick", "--set", "epochs=3"])
    bench_learning.main([])
    assert calls == [("default", bench_learning.QUICK_CHANGES | {"epochs": "3"}), ("default", {})]
    config = bench_learning.trial_config("default", bench_learning.QUICK_CHANGES)
    assert config.data["pretrain"].background == "plain" and bench_learning.advisories(config) == []
    assert config.data["probe"] == config.data["pretrain"]  # the probe reads the same generated set


def test_bad_input_exits_2_before_any_pretraining(monkeypatch, capsys):
    def must_not_run(*_):
        raise AssertionError("pretraining started despite a bad config")

    monkeypatch.setattr(bench_learning, "pretrained_metrics", must_not_run)
    monkeypatch.setattr(bench_learning, "random_init_metrics", must_not_run)
    for argv in (["--set", "method.crop_scale_min=0"], ["--set", "no_such_key=1"], ["--set", "epochs"],
                 ["--preset", "nope"]):
        with pytest.raises(SystemExit) as exit_info:
            bench_learning.main(argv)
        assert exit_info.value.code == 2, argv
        assert "error:" in capsys.readouterr().err


def test_the_baseline_evaluates_the_weights_the_train_loop_starts_from(monkeypatch):
    """The baseline's weights are those `build_model` gives the train loop, whatever ran before."""
    import trainables.evaluation

    config = bench_learning.trial_config("default", {"seed": 7})
    seen = {}

    def fake_evaluate(backbone, config, device):
        seen["weights"] = {k: v.clone() for k, v in backbone.state_dict().items()}
        return {"probe/linear_top1": 12.5}

    monkeypatch.setattr(trainables.evaluation, "evaluate", fake_evaluate)
    torch.manual_seed(12345)  # whatever ran before: the baseline reseeds as the loop does
    assert bench_learning.random_init_metrics(config) == {"probe/linear_top1": 12.5}

    start = build_model(config).backbone.state_dict()
    assert seen["weights"].keys() == start.keys()
    assert all(torch.equal(seen["weights"][k], start[k]) for k in start)
    other = build_model(config.override({"seed": 8})).backbone.state_dict()  # the comparison can fail
    assert not all(torch.equal(other[k], start[k]) for k in start)


def test_study_starts_from_a_studys_settings_so_one_arm_can_be_piloted(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(bench_learning, "run", lambda preset_name, changes: calls.append(changes))
    bench_learning.main(["--study", "dataset_bias", "--set", "data.pretrain=synthetic-coco-scenes",
                         "--set", "probes=linear"])
    from orchestrator.study import SMALL_REGIME

    (changes,) = calls
    assert changes["data.pretrain"] == "synthetic-coco-scenes" and changes["probes"] == "linear"
    assert SMALL_REGIME.items() <= changes.items()
    assert not any(k.startswith("probes.") for k in changes)  # the study's SVM settings left with its probes
    config = bench_learning.trial_config("default", changes)
    assert config.method.crop_scale_min == 0.4 and [p.name for p in config.probes] == ["linear"]
    for argv in (["--study", "no_such_sweep"], ["--study", "dataset_bias", "--quick"]):
        with pytest.raises(SystemExit) as exit_info:
            bench_learning.main(argv)
        assert exit_info.value.code == 2
    assert "no sweep file" in capsys.readouterr().err
