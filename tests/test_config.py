"""Bad configurations are rejected, clearly, before any Ray work starts."""
from __future__ import annotations

import pytest

from orchestrator.cli import parse_overrides
from orchestrator.config import PRESETS, ConfigError, TrialConfig, advisories, check, coerce, validate


def problems(**changes):
    return validate(TrialConfig().replace(**changes))


def test_presets_are_valid():
    for name, config in PRESETS.items():
        assert validate(config) == [], name


def test_paper_preset_uses_the_papers_moco_v2_settings():
    paper = PRESETS["paper"]
    assert (paper.arch, paper.image_size, paper.batch_size) == ("resnet50", 224, 256)
    assert (paper.moco_queue_size, paper.moco_momentum, paper.moco_temperature) == (65536, 0.999, 0.2)
    assert (paper.crop_scale_min, paper.crop_scale_max) == (0.2, 1.0)


def test_a_queue_as_large_as_the_synthetic_set_is_flagged_and_the_default_is_not():
    assert advisories(PRESETS["default"]) == []
    config = TrialConfig(synthetic_classes=2, synthetic_train_per_class=100, moco_queue_size=256)
    (note,) = advisories(config)
    assert "moco_queue_size=256 is not smaller than the 200 pretraining images" in note
    assert advisories(config.replace(synthetic_train_per_class=129)) == []  # 258 images
    # A real dataset is counted by the loader instead (checking it here would scan it).
    assert advisories(config.replace(pretrain_data="/data/imagenet")) == []


def test_crop_scale_min_above_max_is_rejected():
    (msg,) = problems(crop_scale_min=0.9, crop_scale_max=0.5)
    assert "crop_scale_min=0.9 is larger than crop_scale_max=0.5" in msg


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_crop_scale_bounds_outside_unit_interval_are_rejected(bad):
    found = problems(crop_scale_min=bad, crop_scale_max=1.0)
    assert any("crop_scale_min" in p and "outside (0, 1]" in p for p in found)


def test_queue_must_hold_whole_global_batches():
    (msg,) = problems(moco_queue_size=1000, batch_size=64)
    assert "multiple of the global batch_size=64" in msg


def test_missing_dataset_root_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    found = problems(aloi_data=str(missing))
    assert len(found) == 1 and "aloi_data" in found[0] and str(missing) in found[0]
    found = problems(pretrain_data=str(missing))
    assert len(found) == 1 and "pretrain_data" in found[0] and "nowhere" in found[0]


def test_non_aloi_folder_is_rejected(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.png").write_bytes(b"not really")
    (msg,) = problems(aloi_data=str(tmp_path))
    assert msg.startswith("aloi_data:") and str(tmp_path) in msg


def test_unknown_and_unavailable_invariances_are_rejected():
    assert any("unknown factors" in p for p in problems(ris_invariances="viewpoint,texture"))
    assert any("not available yet" in p for p in problems(ris_invariances="occlusion"))


def test_unknown_synthetic_background_is_rejected():
    (msg,) = problems(synthetic_background="grass")
    assert "synthetic_background='grass'" in msg and "clutter, plain" in msg
    assert problems(synthetic_background="plain") == []


def test_check_collects_every_problem_of_every_trial():
    with pytest.raises(ConfigError) as err:
        check([TrialConfig(crop_scale_min=0.5, crop_scale_max=0.4), TrialConfig(epochs=0)])
    text = str(err.value)
    assert "trial 0: crop_scale_min=0.5 is larger" in text and "trial 1: epochs=0" in text


def test_overrides_are_typed_and_unknown_keys_rejected():
    assert parse_overrides(["epochs=3", "use_gpu=true", "lr=0.1", "arch=resnet50"]) == {
        "epochs": 3, "use_gpu": True, "lr": 0.1, "arch": "resnet50"}
    with pytest.raises(ConfigError, match="unknown trial config key 'epoch'"):
        coerce("epoch", "3")
    with pytest.raises(ConfigError, match="expected int"):
        coerce("epochs", "three")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["epochs"])
