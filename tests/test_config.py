"""The trial config: typed sections, dotted keys, and bad configurations rejected, clearly,
before any Ray work starts. Each rule is tested at its owner: the run's rules here, each
part's in its part's test (MoCo v2: tests/test_moco.py; sources: tests/test_parts.py)."""
from __future__ import annotations

import pytest

from orchestrator.config import PRESETS, ConfigError, TrialConfig, advisories, check, parse_overrides
from trainables.config import per_worker_batch
from trainables.methods.mocov2 import MoCoV2


def problems(**changes):
    return TrialConfig().override(changes).problems()


def test_the_default_preset_is_valid_and_runs_without_advisories():
    assert PRESETS["default"].problems() == [] and advisories(PRESETS["default"]) == []


def test_paper_preset_uses_the_papers_moco_v2_settings():
    paper = PRESETS["paper"]
    assert (paper.arch, paper.image_size, paper.batch_size, paper.epochs) == ("resnet50", 224, 256, 200)
    # MoCo v2: SGD lr 0.03 (batch 256), momentum 0.9, weight decay 1e-4, cosine schedule;
    # 2048-d MLP head to 128-d, K = 65,536, m = 0.999, tau = 0.2, crops of 20-100 %.
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.cosine_schedule) == (0.03, 0.9, 1e-4, True)
    assert paper.method == MoCoV2(dim=128, queue_size=65536, momentum=0.999, temperature=0.2,
                                  crop_scale_min=0.2, crop_scale_max=1.0)
    assert (paper.num_workers, paper.use_gpu) == (8, True)


def test_paper_preset_refuses_to_start_until_its_real_roots_are_set(tmp_path):
    paper = PRESETS["paper"]
    assert advisories(paper) == []
    assert sorted(paper.problems()) == [
        "data.aloi.root is not set: point it at the aloi dataset's folder",
        "data.got10k.root is not set: point it at the got10k dataset's folder",
        "data.pascal3d.root is not set: point it at the pascal3d dataset's folder",
        "data.pretrain.root is not set: point it at the image-folder dataset's folder",
        "data.probe.root is not set: point it at the image-folder dataset's folder"]
    images = tmp_path / "imagenet"
    for split in ("train", "val"):
        (images / split / "cat").mkdir(parents=True)
        (images / split / "cat" / "1.jpg").write_bytes(b"")
    aloi = tmp_path / "aloi" / "png4" / "1"
    aloi.mkdir(parents=True)
    (aloi / "1_r0.png").write_bytes(b"")
    ready = paper.override({"data.pretrain.root": str(images), "data.probe.root": str(images),
                            "data.aloi.root": str(tmp_path / "aloi"), "invariances": "viewpoint"})
    assert ready.problems() == [] and advisories(ready) == []


def test_the_views_round_trip_and_the_params_hold_only_the_parts_used():
    trial = TrialConfig().override({"method.queue_size": "512", "invariances": "viewpoint"})
    assert TrialConfig.from_nested(trial.to_nested()) == trial
    assert TrialConfig().override(trial.flat(params_only=False)) == trial
    params = trial.flat()
    assert params["method"] == "mocov2" and params["method.queue_size"] == 512
    assert params["invariances"] == "viewpoint" and params["data.aloi"] == "synthetic-aloi"
    assert "data_cache" not in params and "inject_failure_at_epoch" not in params
    # No probe: no probe keys, and no data role that only the probe read.
    bare = trial.override({"probes": "", "invariances": ""})
    assert not [k for k in bare.flat() if k.startswith(("probes.", "data.probe", "data.aloi", "invariances."))]
    assert set(bare.data) == {"pretrain"}


def test_a_real_root_replaces_the_generator_and_its_keys():
    trial = TrialConfig().override({"data.pretrain": "image-folder", "data.pretrain.root": "/data/imagenet"})
    params = trial.flat()
    assert params["data.pretrain"] == "image-folder" and params["data.pretrain.root"] == "/data/imagenet"
    assert not [k for k in params if k.startswith("data.pretrain.") and k != "data.pretrain.root"]


def test_batch_must_split_evenly_over_the_workers():
    assert per_worker_batch(64, 4) == 16
    with pytest.raises(ValueError, match="batch_size=64 does not split evenly over num_workers=3"):
        per_worker_batch(64, 3)
    (msg,) = problems(num_workers=3)
    assert msg == "batch_size=64 does not split evenly over num_workers=3"


def test_architecture_must_be_a_torchvision_resnet():
    (msg,) = problems(arch="vit_b_16")
    assert "arch='vit_b_16' is not a torchvision ResNet-family model" in msg and "resnext50_32x4d" in msg
    assert problems(arch="wide_resnet50_2") == []


def test_run_numbers_are_checked():
    assert problems(epochs=-1) == ["epochs=-1 must be at least 0 (0: no training, the initial weights are evaluated)"]
    assert problems(epochs=0) == []  # a study's random-initialisation row
    assert problems(image_size=16) == ["image_size=16 is too small for a ResNet (at least 32)"]
    assert problems(ris_max_objects=-1) == ["ris_max_objects=-1 must be >= 0 (0 = all)"]


def test_the_ris_reading_is_checked_and_logged_with_every_run():
    # The sign rule, local-rate reading and weighting are params of every trial, so every
    # logged RIS says how it was read (trainables.invariance).
    params = TrialConfig().flat()
    assert (params["ris_sign"], params["ris_local_rate"], params["ris_weighting"]) == ("per_target", "eq2", "sample")
    assert problems(ris_sign="per_unit_max", ris_local_rate="reference", ris_weighting="trajectory") == []
    (retired,) = problems(ris_sign="per_unit")
    assert retired.startswith("ris_sign='per_unit' was removed: its criterion, the mean over targets of I_y(i), is 1")
    assert problems(ris_local_rate="conditional", ris_weighting="target") == [
        "ris_local_rate='conditional' is not one of eq2, reference",
        "ris_weighting='target' is not one of sample, trajectory"]


def test_a_queue_as_large_as_the_synthetic_set_is_flagged_and_the_default_is_not():
    assert advisories(PRESETS["default"]) == []
    config = TrialConfig().override({"data.pretrain.classes": 2, "data.pretrain.train_per_class": 100})
    (note,) = advisories(config)
    assert "method.queue_size=256 is not smaller than the 200 pretraining images" in note
    assert advisories(config.override({"data.pretrain.train_per_class": 129})) == []  # 258 images
    # A real dataset is counted by the loader instead (checking it here would scan it).
    assert advisories(config.override({"data.pretrain": "image-folder", "data.pretrain.root": "/x"})) == []


def test_missing_dataset_root_names_the_role_and_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    (msg,) = problems(**{"data.aloi": "aloi", "data.aloi.root": str(missing)})
    assert msg.startswith("data.aloi: ") and str(missing) in msg
    (msg,) = problems(**{"data.pretrain": "image-folder", "data.pretrain.root": str(missing)})
    assert msg.startswith("data.pretrain: ") and "nowhere" in msg


def test_non_aloi_folder_is_rejected(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "a.png").write_bytes(b"not really")
    (msg,) = problems(**{"data.aloi": "aloi", "data.aloi.root": str(tmp_path)})
    assert msg.startswith("data.aloi:") and str(tmp_path) in msg


def test_a_source_of_the_wrong_layout_is_rejected():
    (msg,) = problems(**{"data.aloi": "synthetic-objects"})
    assert "data.aloi=synthetic-objects yields the image-folder layout" in msg and "synthetic-aloi" in msg


def test_unknown_parts_and_keys_are_rejected_with_their_dotted_names():
    with pytest.raises(ConfigError, match="invariances.texture: unknown invariance set 'texture'"):
        problems(invariances="viewpoint,texture")
    with pytest.raises(ConfigError, match="method: unknown method 'no_such_method'"):
        problems(method="no_such_method")
    with pytest.raises(ConfigError, match="unknown trial config key 'method.queue'"):
        problems(**{"method.queue": 5})
    with pytest.raises(ConfigError, match="unknown trial config key 'epoch'"):
        problems(epoch=3)
    with pytest.raises(ConfigError, match="no part of this trial reads data.video"):
        problems(**{"data.video": "image-folder"})
    with pytest.raises(ConfigError, match=r"method.queue_size='many': expected int"):
        problems(**{"method.queue_size": "many"})


def test_check_collects_every_problem_of_every_trial():
    with pytest.raises(ConfigError) as err:
        check([TrialConfig().override({"method.crop_scale_min": 0.5, "method.crop_scale_max": 0.4}),
               TrialConfig(epochs=-1)])
    text = str(err.value)
    assert "trial 0: method.crop_scale_min=0.5 is larger" in text and "trial 1: epochs=-1" in text


def test_overrides_are_typed_in_order_and_malformed_ones_rejected():
    trial = TrialConfig().override(parse_overrides(
        ["epochs=3", "use_gpu=true", "lr=0.1", "arch=resnet50", "method.temperature=0.1"]))
    assert (trial.epochs, trial.use_gpu, trial.lr, trial.arch) == (3, True, 0.1, "resnet50")
    assert trial.method.temperature == 0.1
    with pytest.raises(ConfigError, match="expected int"):
        TrialConfig().override(parse_overrides(["epochs=three"]))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["epochs"])
