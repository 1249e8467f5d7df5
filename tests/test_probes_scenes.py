"""The VOC07, cropped-box and segmentation probes on the synthetic scenes, in process (no Ray)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.config import TrialConfig
from trainables.evaluation import evaluate
from trainables.features import extract_feature_maps
from trainables.models import resnet_backbone
from trainables.probes.seg import LAYERS, load_pairs, train_and_score_head

SCENES = {"classes": 4, "trainval": 48, "test": 48}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def scene_trial(data_cache, probes: str, **changes) -> TrialConfig:
    role = {"seg": "ade20k"}.get(probes.split(",")[0], "voc")
    return TrialConfig().override({"image_size": 32, "invariances": "", "probes": probes, "eval_batch_size": 64,
                                   "data_cache": str(data_cache),
                                   **{f"data.{role}.{k}": v for k, v in SCENES.items()}, **changes})


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return resnet_backbone("resnet18")[0].eval()


class LabelFeatures:
    """A stand-in extraction path whose features encode each image's labels (plus noise)."""

    def __init__(self, rows: dict[Path, np.ndarray]):
        self.rows, self.skipped = rows, 0
        self.rng = np.random.default_rng(0)

    def __call__(self, paths):
        x = np.stack([np.r_[self.rows[Path(p)] * 2.0, self.rng.normal(size=8)] for p in paths]).astype(np.float32)
        return x, np.arange(len(paths))


def test_voc07_probes_score_label_features_near_100(data_cache):
    from datasets.voc import read_voc_split
    from trainables.probes import Voc07BoxesProbe

    trial = scene_trial(data_cache, "voc07,voc07_boxes", **{"probes.voc07.pair": "box,cone"})
    root = trial.root("voc")
    rows = {}
    for split in ("trainval", "test"):
        data = read_voc_split(root, split)
        rows.update(zip(data.paths, (data.labels == 1).astype(float)))
        paths, labels = Voc07BoxesProbe().boxes(root, split)[:2]
        rows.update(zip(paths, (labels == 1).astype(float)))
    metrics = evaluate(None, trial, "cpu", features=LabelFeatures(rows))
    assert metrics["probe/voc07_map"] > 99 and metrics["probe/voc07_boxes_map"] > 99
    assert metrics["probe/voc07_pair_map"] > 99 and metrics["data/voc07_pair_images"] > 0
    assert metrics["data/voc07_classes_scored"] == 4


def test_voc07_probes_on_a_frozen_backbone(data_cache, backbone):
    from datasets.voc import parse_annotation, read_voc_split

    trial = scene_trial(data_cache, "voc07,voc07_boxes", **{"probes.voc07.pair": "box,cone"})
    metrics = evaluate(backbone, trial, "cpu")
    for key in ("probe/voc07_map", "probe/voc07_boxes_map", "probe/voc07_pair_map"):
        assert 0 < metrics[key] <= 100
    root = trial.root("voc")
    objects = [o for split in ("trainval", "test") for i in read_voc_split(root, split).ids
               for o in parse_annotation(read_voc_split(root, split).annotation_path(i)).objects]
    difficult = sum(o.difficult for o in objects)
    assert metrics["data/voc07_boxes"] == len(objects) - difficult
    assert metrics["data/voc07_boxes_skipped"] == difficult


def test_seg_head_trained_beats_untrained_on_held_out_masks(data_cache, backbone):
    from datasets.ade20k import read_ade20k

    trial = scene_trial(data_cache, "seg")
    root = trial.root("ade20k")
    train, val = read_ade20k(root, "training"), read_ade20k(root, "validation")
    x_train, y_train, _ = load_pairs(train.images, train.masks, 64)
    x_val, y_val, _ = load_pairs(val.images, val.masks, 64)
    maps_train = extract_feature_maps(backbone, x_train, LAYERS, 64, "cpu")
    maps_val = extract_feature_maps(backbone, x_val, LAYERS, 64, "cpu")
    untrained = train_and_score_head(maps_train, y_train, maps_val, y_val, 5, epochs=0, lr=0.003, batch_size=16, seed=0)
    trained = train_and_score_head(maps_train, y_train, maps_val, y_val, 5, epochs=20, lr=0.003, batch_size=16, seed=0)
    assert trained[0] > untrained[0] + 10, (trained, untrained)  # mIoU
    assert trained[1] > untrained[1] + 20, (trained, untrained)  # pixel accuracy

    metrics = evaluate(backbone, trial.override({"probes.seg.input_size": 64, "probes.seg.epochs": 2}), "cpu")
    assert 0 < metrics["probe/seg_miou"] <= 100 and 0 < metrics["probe/seg_pixel_acc"] <= 100
    assert metrics["data/seg_skipped"] == 0


def test_probe_settings_are_checked_before_any_work(data_cache):
    trial = scene_trial(data_cache, "voc07,voc07_boxes", **{"probes.voc07.costs": "1,-2", "probes.voc07.pair": "box",
                                                            "probes.voc07_boxes.cv_folds": 1})
    problems = "\n".join(trial.problems())
    assert "probes.voc07.costs='1,-2' must list at least one positive cost" in problems
    assert "probes.voc07.pair='box' must name two different classes" in problems
    assert "probes.voc07_boxes.cv_folds=1 must be at least 2" in problems
    seg = scene_trial(data_cache, "seg", **{"probes.seg.input_size": 16, "probes.seg.lr": 0})
    assert {"probes.seg.input_size=16 must be at least 32 (a ResNet's layer4 is 1/32 of it)",
            "probes.seg.lr=0.0 must be positive"} <= set(seg.problems())
