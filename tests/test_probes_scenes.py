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
    """A stand-in extraction path whose features encode each image's labels (plus noise);
    with ``signal=0`` pure noise."""

    def __init__(self, rows: dict[Path, np.ndarray], signal: float = 2.0):
        self.rows, self.signal, self.skipped = rows, signal, 0
        self.rng = np.random.default_rng(0)

    def __call__(self, paths):
        x = np.stack([np.r_[self.rows[Path(p)] * self.signal, self.rng.normal(size=8)] for p in paths])
        return x.astype(np.float32), np.arange(len(paths))


def label_rows(root: Path) -> tuple[dict[Path, np.ndarray], float]:
    """Each scene image's and box crop's presence vector, and the test scenes' positive rate
    (the mean AP of a random ranking, about)."""
    from datasets.voc import read_voc_split
    from trainables.probes.voc07 import Voc07BoxesProbe

    rows = {}
    for split in ("trainval", "test"):
        data = read_voc_split(root, split)
        rows.update(zip(data.paths, (data.labels == 1).astype(float)))
        paths, labels = Voc07BoxesProbe().boxes(root, split)[:2]
        rows.update(zip(paths, (labels == 1).astype(float)))
    test = read_voc_split(root, "test").labels
    return rows, 100 * float(np.mean([(test[:, c] == 1).sum() / (test[:, c] != 0).sum() for c in range(test.shape[1])]))


# Two costs keep these seconds long (Goyal's 26 are pinned in test_probe_voc07.py).
FEW_COSTS = {"probes.voc07.costs": "0.1,10", "probes.voc07_boxes.costs": "0.1,10"}


@pytest.mark.parametrize("protocol", ["goyal2019", "fast"])
def test_voc07_probes_score_label_features_near_100_and_noise_near_chance(data_cache, protocol):
    trial = scene_trial(data_cache, "voc07,voc07_boxes", **{"probes.voc07.pair": "box,cone",
                                                            "probes.voc07.protocol": protocol,
                                                            "probes.voc07_boxes.protocol": protocol, **FEW_COSTS})
    rows, chance = label_rows(trial.root("voc"))
    metrics = evaluate(None, trial, "cpu", features=LabelFeatures(rows))
    assert metrics["probe/voc07_map"] > 99 and metrics["probe/voc07_boxes_map"] > 99
    assert metrics["probe/voc07_pair_map"] > 99 and metrics["data/voc07_pair_images"] > 0
    assert metrics["data/voc07_classes_scored"] == 4
    noise = evaluate(None, trial, "cpu", features=LabelFeatures(rows, signal=0.0))
    # Features without the labels rank at random: the mAP stays near the positive rate.
    assert abs(noise["probe/voc07_map"] - chance) < 15, (noise["probe/voc07_map"], chance)


def test_voc07_probes_on_a_frozen_backbone(data_cache, backbone):
    from datasets.voc import parse_annotation, read_voc_split
    from trainables.augment import eval_transform
    from trainables.features import extract_features
    from trainables.models import scored_layer
    from trainables.probes.voc07 import Voc07BoxesProbe
    from trainables.probes.svm import svm_map

    trial = scene_trial(data_cache, "voc07,voc07_boxes", **{"probes.voc07.pair": "box,cone", **FEW_COSTS})
    metrics = evaluate(backbone, trial, "cpu")
    root = trial.root("voc")
    # The default (goyal2019) protocol by hand: whole images, layer4 on the 2 x 2 grid, its SVMs and AP.
    net, view = scored_layer(backbone, "layer4_2x2"), eval_transform(32, whole_image=True)
    train, test = read_voc_split(root, "trainval"), read_voc_split(root, "test")
    boxes = [Voc07BoxesProbe().boxes(root, split)[:2] for split in ("trainval", "test")]
    for key, (train_paths, train_labels), (test_paths, test_labels) in (
            ("probe/voc07_map", (train.paths, train.labels), (test.paths, test.labels)),
            ("probe/voc07_boxes_map", *boxes)):
        train_x = extract_features(net, train_paths, 64, "cpu", view)[0]
        test_x = extract_features(net, test_paths, 64, "cpu", view)[0]
        expected = svm_map(train_x, train_labels, test_x, test_labels, costs=(0.1, 10.0), seed=trial.seed,
                           protocol="goyal2019")[0]
        assert metrics[key] == pytest.approx(expected, abs=1e-6), key
    objects = [o for split in ("trainval", "test") for i in read_voc_split(root, split).ids
               for o in parse_annotation(read_voc_split(root, split).annotation_path(i)).objects]
    difficult = sum(o.difficult for o in objects)
    assert metrics["data/voc07_boxes"] == len(objects) - difficult
    assert metrics["data/voc07_boxes_left_out"] == difficult  # by the protocol: no warning
    assert metrics["data/voc07_boxes_skipped"] == 0  # no box failed to crop


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

    # The probe through the evaluation stage gives exactly the head trained here on the same
    # maps (64 px, 2 epochs, the probe's lr and batch, the trial's seed): its plumbing adds nothing.
    from trainables.probes.seg import SegmentationProbe

    probe = SegmentationProbe()
    metrics = evaluate(backbone, trial.override({"probes.seg.input_size": 64, "probes.seg.epochs": 2}), "cpu")
    expected = train_and_score_head(maps_train, y_train, maps_val, y_val, 5, epochs=2, lr=probe.lr,
                                    batch_size=probe.batch_size, seed=trial.seed)
    assert (metrics["probe/seg_miou"], metrics["probe/seg_pixel_acc"]) == pytest.approx(expected, abs=1e-9)
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
