"""VOC07 average precision and the SVM protocol (no Ray)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler

from trainables.probes.svm import voc07_average_precision
from trainables.probes.svm import svm_map


def reference_ap(scores, labels, eleven_point):
    """An independent loop: one operating point per distinct threshold (score >= t)."""
    pairs = [(s, y) for s, y in zip(scores, labels) if y != 0]
    n_pos = sum(y == 1 for _, y in pairs)
    points = []
    for t in sorted({s for s, _ in pairs}, reverse=True):
        tp = sum(1 for s, y in pairs if s >= t and y == 1)
        fp = sum(1 for s, y in pairs if s >= t and y == -1)
        points.append((tp / n_pos, tp / (tp + fp)))
    if eleven_point:
        total = 0.0
        for k in range(11):
            at = [p for r, p in points if r >= k / 10 - 1e-12]
            total += max(at) if at else 0.0
        return 100 * total / 11
    # Area under the interpolated curve: p_interp(r) = max precision at recall >= r.
    area, previous = 0.0, 0.0
    for r, _ in points:
        area += (r - previous) * max(p for r2, p in points if r2 >= r)
        previous = r
    return 100 * area


CASES = {
    "perfect": ([0.9, 0.8, 0.1, 0.05], [1, 1, -1, -1]),
    "worst": ([0.1, 0.2, 0.8, 0.9], [1, 1, -1, -1]),
    "interleaved": ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, -1, 1, -1, -1, 1]),
    "ties": ([0.5, 0.5, 0.5, 0.2, 0.2], [1, -1, -1, 1, -1]),
    "difficult": ([0.9, 0.95, 0.8, 0.3, 0.99], [1, 0, -1, 1, 0]),
    # Recall exactly 3/10 at precision 1, then 1/2: the 0.3 level must see the 1.
    "recall_three_tenths": (list(range(14, 0, -1)), [1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1]),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("eleven_point", [True, False])
def test_ap_matches_an_independent_loop(name, eleven_point):
    scores, labels = CASES[name]
    assert voc07_average_precision(scores, labels, eleven_point) == pytest.approx(
        reference_ap(scores, labels, eleven_point), abs=1e-9)


def test_ap_hand_computed_values():
    # interleaved: P/R points (1/3, 1), (2/3, 2/3), (1, 1/2). 11-point: t <= 0.3 -> 1,
    # 0.4..0.6 -> 2/3, 0.7..1.0 -> 1/2; area: 1/3 * 1 + 1/3 * 2/3 + 1/3 * 1/2.
    scores, labels = CASES["interleaved"]
    assert voc07_average_precision(scores, labels) == pytest.approx(100 * (4 * 1 + 3 * 2 / 3 + 4 * 0.5) / 11)
    assert voc07_average_precision(scores, labels, eleven_point=False) == pytest.approx(100 * (1 + 2 / 3 + 1 / 2) / 3)
    assert voc07_average_precision(*CASES["perfect"]) == 100.0
    # Ties form one threshold: order of tied examples does not matter.
    scores, labels = CASES["ties"]
    assert voc07_average_precision(scores, labels) == voc07_average_precision(scores[::-1], labels[::-1])
    # Difficult (0) examples are ignored whatever their score: same as dropping them.
    scores, labels = CASES["difficult"]
    kept = [(s, y) for s, y in zip(scores, labels) if y]
    # Kept: (0.9, +), (0.8, -), (0.3, +): points (1/2, 1), (1, 2/3); 11-point (6 * 1 + 5 * 2/3) / 11.
    assert voc07_average_precision(scores, labels) == voc07_average_precision(*zip(*kept))
    assert voc07_average_precision(scores, labels) == pytest.approx(100 * (6 + 5 * 2 / 3) / 11)


def test_area_ap_matches_sklearn_where_definitions_agree():
    # sklearn's AP is the uninterpolated sum of recall steps x precision; it equals the
    # interpolated area AP when precision never rises with recall, and is below it otherwise.
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = np.where(rng.random(40) < 0.3, 1, -1)
        labels[0] = 1
        scores = rng.normal(size=40) + labels
        ours = voc07_average_precision(scores, labels, eleven_point=False)
        theirs = 100 * average_precision_score(labels == 1, scores)
        assert ours >= theirs - 1e-9
    monotone_scores, monotone_labels = [0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, -1, 1, -1]
    # precisions at the positives: 1, 1, 3/4: non-increasing
    assert voc07_average_precision(monotone_scores, monotone_labels, eleven_point=False) == pytest.approx(
        100 * average_precision_score(np.array(monotone_labels) == 1, monotone_scores))


def test_ap_without_positives_is_nan_and_bad_input_is_refused():
    assert math.isnan(voc07_average_precision([0.3, 0.2], [-1, 0]))
    with pytest.raises(ValueError, match="differ in length"):
        voc07_average_precision([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="1, -1 or 0"):
        voc07_average_precision([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        voc07_average_precision([0.1, float("nan")], [1, -1])


def multilabel(seed, n=240, classes=5):
    """Images with several labels each, in VOC's {1, -1} encoding, about 30 % positive."""
    rng = np.random.default_rng(seed)
    present = rng.random((n, classes)) < 0.3
    return np.where(present, 1, -1).astype(np.int8), present


@pytest.mark.parametrize("protocol", ["goyal2019", "fast"])
def test_svm_map_near_100_on_label_features_and_near_frequency_on_random(protocol):
    few = {"costs": (0.01, 1.0), "protocol": protocol}  # two costs: seconds, not minutes
    train_labels, train_present = multilabel(1)
    test_labels, test_present = multilabel(2)
    rng = np.random.default_rng(3)

    def encode(present):  # features that encode the labels, plus noise dimensions
        return np.hstack([present * 2.0 + rng.normal(0, 0.1, present.shape), rng.normal(0, 1, (len(present), 11))])

    mean_ap, aps = svm_map(encode(train_present), train_labels, encode(test_present), test_labels, **few)
    assert mean_ap > 99.0 and not np.isnan(aps).any()

    random_map, _ = svm_map(rng.normal(size=(240, 16)), train_labels, rng.normal(size=(240, 16)), test_labels, **few)
    frequency = 100 * test_present.mean()
    # A random ranking's AP is about the positive rate (11-point AP slightly above it).
    assert abs(random_map - frequency) < 12.0, (random_map, frequency)


def test_svm_map_skips_unscorable_classes_and_ignores_difficult():
    train_labels, present = multilabel(1, n=120, classes=3)
    test_labels, test_present = multilabel(2, n=120, classes=3)
    x_train, x_test = present * 1.0, test_present * 1.0
    train_labels[:, 2] = -1  # no training positive: class 2 is not scored
    test_labels[test_present[:, 0], 0] = 0  # every positive of class 0 difficult: not scored
    mean_ap, aps = svm_map(x_train, train_labels, x_test, test_labels, costs=(1.0,))
    assert np.isnan(aps[0]) and np.isnan(aps[2]) and aps[1] > 99.0
    assert mean_ap == aps[1]
    with pytest.raises(ValueError, match="N x C"):
        svm_map(x_train, train_labels[:, :2], x_test, test_labels)


@pytest.mark.parametrize("protocol", ["goyal2019", "fast"])
def test_svm_scores_do_not_depend_on_threads_and_bad_settings_are_refused(protocol):
    from trainables.probes.svm import svm_problems, svm_scores

    train_labels, present = multilabel(4, n=150, classes=4)
    rng = np.random.default_rng(5)
    x = np.hstack([present + rng.normal(0, 0.5, present.shape), rng.normal(0, 1, (150, 6))])
    one = svm_scores(x[:100], train_labels[:100], x[100:], costs=(0.1, 1.0), n_jobs=1, protocol=protocol)
    both = svm_scores(x[:100], train_labels[:100], x[100:], costs=(0.1, 1.0), n_jobs=2, protocol=protocol)
    np.testing.assert_array_equal(one, both)
    assert svm_problems("0.1,1", 3, 100, n_jobs=-1) == []
    assert any("n_jobs=0" in p for p in svm_problems("0.1,1", 3, 100, n_jobs=0))


# -- the two named protocols (trainables.probes.svm.PROTOCOLS) ------------------------------
GOYAL = "goyal2019"


def separable(seed, n=90, dim=8):
    """One class, about a third positive, a noisy signal on the first dimension."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.35, 1, -1)
    y[:3], y[3:6] = 1, -1
    x = rng.normal(size=(n, dim)) + 1.5 * (y == 1)[:, None] * np.eye(dim)[0]
    return x.astype(np.float32), y


def goyal_area_ap(scores, labels):
    """Goyal et al.'s AP written out independently: drop ignored rows, rank by score, then
    the area under the precision envelope with sentinels at recall 0 and 1 (distinct scores)."""
    keep = [(s, y) for s, y in zip(scores, labels) if y != 0]
    keep.sort(key=lambda p: -p[0])
    n_pos = sum(y == 1 for _, y in keep)
    tp = fp = 0
    recalls, precisions = [0.0], [0.0]
    for _, y in keep:
        tp, fp = tp + (y == 1), fp + (y != 1)
        recalls.append(tp / n_pos)
        precisions.append(tp / (tp + fp))
    recalls.append(1.0)
    precisions.append(0.0)
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    return 100 * sum((recalls[i] - recalls[i - 1]) * precisions[i] for i in range(1, len(recalls))
                     if recalls[i] != recalls[i - 1])


def test_goyal_rows_are_l2_normalised_and_fast_standardises():
    from trainables.probes.svm import prepare_features

    rng = np.random.default_rng(0)
    train, test = rng.normal(3, 2, (50, 6)), rng.normal(-1, 5, (20, 6))
    train[0] = 0  # an all-zero row stays finite (the 1e-5 of their normalize_features)
    a, b = prepare_features(train, test, GOYAL)
    np.testing.assert_allclose(np.linalg.norm(a[1:], axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(a * (np.linalg.norm(train, axis=1, keepdims=True) + 1e-5), train, atol=1e-9)
    assert np.all(a[0] == 0)
    fa, fb = prepare_features(train, test, "fast")
    np.testing.assert_allclose(fa.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(fa.std(0), 1, atol=1e-9)
    np.testing.assert_allclose(fb, (test - train.mean(0)) / train.std(0), atol=1e-9)  # trainval's statistics


def test_fitted_svm_has_each_protocols_class_weight_and_solver():
    from trainables.probes.svm import fit_class_svm

    x, y = separable(0)
    goyal = fit_class_svm(x, y, (0.1, 1.0), 3, 0, 2000, GOYAL)
    assert goyal.class_weight == {1: 2, -1: 1} and goyal.dual is True and goyal.loss == "squared_hinge"
    assert goyal.penalty == "l2" and goyal.tol == 1e-4 and goyal.max_iter == 2000
    assert fit_class_svm(x, y, (0.1, 1.0), 3, 0, 2000, "fast").class_weight == "balanced"


def test_goyal_cost_grid_is_their_26_costs_and_empty_costs_mean_the_protocols_grid():
    from trainables.probes.svm import PROTOCOLS, parse_costs

    grid = PROTOCOLS[GOYAL].costs
    # README's --costs_list 1e-7 ... 100, then svm_helper.parse_cost_list's 0.5 ** 4 ... 0.5 ** 19.
    expected = [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0] + [0.5 ** p for p in range(4, 20)]
    assert grid == pytest.approx(expected, rel=1e-12) and len(grid) == 26
    assert parse_costs("", GOYAL) == grid and parse_costs(" ", "fast") == (0.01, 0.1, 1.0, 10.0)
    assert parse_costs("2,3", GOYAL) == (2.0, 3.0)  # an explicit grid wins


def test_goyal_cost_is_the_best_mean_ap_of_unshuffled_3_fold_cv_first_in_grid_order():
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import LinearSVC

    from trainables.probes.svm import PROTOCOLS, fit_class_svm

    costs = PROTOCOLS[GOYAL].costs
    for seed in (1,):
        x, y = separable(seed)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)  # as the protocol feeds it (and liblinear converges)
        # What train_svm_kfold.py + test_svm.py do: cross_val_score(cv=3) per cost, argmax.
        means = [cross_val_score(LinearSVC(C=c, class_weight={1: 2, -1: 1}, dual=True, max_iter=2000, random_state=0),
                                 x, y, cv=3, scoring="average_precision").mean() for c in costs]
        chosen = fit_class_svm(x, y, costs, 3, 0, 2000, GOYAL)
        assert chosen.C == costs[int(np.argmax(means))], (seed, chosen.C)


def test_difficult_is_a_negative_in_goyal_training_and_left_out_in_fast():
    from sklearn.svm import LinearSVC

    from trainables.probes.svm import l2_normalise_rows, svm_scores, training_labels

    labels = np.array([1, 0, -1, 0])
    np.testing.assert_array_equal(training_labels(labels, GOYAL), [1, -1, -1, -1])
    np.testing.assert_array_equal(training_labels(labels, "fast"), labels)

    x, y = separable(4)
    y_difficult = y.copy()
    y_difficult[np.flatnonzero(y == 1)[:4]] = 0  # four positives only difficult
    test_x = np.random.default_rng(5).normal(size=(30, 8)).astype(np.float32)
    got = svm_scores(x, y_difficult[:, None], test_x, costs=(1.0,), protocol=GOYAL)[:, 0]
    # An independent fit: L2 rows, their weights, the difficult rows as -1.
    svm = LinearSVC(C=1.0, class_weight={1: 2, -1: 1}, dual=True, max_iter=2000, random_state=0)
    svm.fit(l2_normalise_rows(x), np.where(y_difficult == 0, -1, y_difficult))
    np.testing.assert_allclose(got, svm.decision_function(l2_normalise_rows(test_x)), rtol=1e-5, atol=1e-6)
    fast = svm_scores(x, y_difficult[:, None], test_x, costs=(1.0,), protocol="fast")[:, 0]
    kept = y_difficult != 0
    scaler = StandardScaler().fit(x)
    reference = LinearSVC(C=1.0, class_weight="balanced", dual=True, max_iter=2000, random_state=0).fit(
        scaler.transform(x)[kept], y_difficult[kept])
    np.testing.assert_allclose(fast, reference.decision_function(scaler.transform(test_x)), rtol=1e-4, atol=1e-5)


def test_goyal_ap_is_their_area_ap_with_difficult_ignored_and_fast_is_11_point():
    from trainables.probes.svm import mean_ap, svm_scores

    rng = np.random.default_rng(6)
    scores = rng.normal(size=(60, 3))
    labels = np.where(rng.random((60, 3)) < 0.3, 1, -1)
    labels[:2] = 1
    labels[rng.random((60, 3)) < 0.1] = 0  # difficult-only test images: ignored
    _, area = mean_ap(scores, labels, eleven_point=False)
    np.testing.assert_allclose(area, [goyal_area_ap(scores[:, c], labels[:, c]) for c in range(3)], atol=1e-9)
    _, eleven = mean_ap(scores, labels, eleven_point=True)
    np.testing.assert_allclose(eleven, [reference_ap(scores[:, c], labels[:, c], True) for c in range(3)], atol=1e-9)
    assert not np.allclose(area, eleven)  # the two definitions differ here, so the mapping below matters

    x, y = separable(7, n=120)
    test_x, test_y = separable(8, n=120)
    for protocol, eleven_point in ((GOYAL, False), ("fast", True)):
        value, _ = svm_map(x, y[:, None], test_x, test_y[:, None], costs=(1.0,), protocol=protocol)
        column = svm_scores(x, y[:, None], test_x, costs=(1.0,), protocol=protocol)[:, 0]
        assert value == pytest.approx(voc07_average_precision(column, test_y, eleven_point), abs=1e-9)


def test_unknown_protocol_is_refused_with_the_choices():
    from trainables.probes.svm import svm_problems

    assert "protocol='goyal' is not one of goyal2019, fast" in svm_problems("", 3, 100, 1, "goyal")
    with pytest.raises(ValueError, match="not one of goyal2019, fast"):
        svm_map(np.zeros((4, 2)), np.ones((4, 1)), np.zeros((4, 2)), np.ones((4, 1)), protocol="goyal")


def test_whole_image_view_keeps_the_sides_that_the_centre_crop_cuts():
    import torch

    from trainables.augment import eval_transform

    image = torch.zeros(3, 375, 500, dtype=torch.uint8)  # a VOC-sized landscape image
    image[0, :, :50] = 255  # a red stripe along the left tenth
    whole, crop = eval_transform(64, whole_image=True)(image), eval_transform(64)(image)
    assert whole.shape == crop.shape == (3, 64, 64)
    red = whole[0] > whole[1] + 1  # normalised red channel above green where the stripe is
    assert red[:, :5].all() and not red[:, 8:].any()  # the stripe: the left 64 / 10 columns
    assert not (crop[0] > crop[1] + 1).any()  # the centre square of 375 x 375 loses it


def test_layer4_2x2_is_goyal_res5_s1k6_pooling_at_224_px():
    import torch
    from torch import nn

    from trainables.models import resnet_backbone, scored_layer

    torch.manual_seed(0)
    trunk = resnet_backbone("resnet18")[0].eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool,
                             trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4)
        maps = stem(x)  # 2 x 512 x 7 x 7
        expected = nn.functional.avg_pool2d(maps, kernel_size=6, stride=1).flatten(1)  # 2 x 2 x 512
        got = scored_layer(trunk, "layer4_2x2")(x)
    assert maps.shape[-2:] == (7, 7) and got.shape == (2, 4 * 512)
    torch.testing.assert_close(got, expected)


def test_probe_view_follows_the_protocol_and_counts_skipped_images_once(tmp_path):
    import torch

    from trainables.augment import eval_transform
    from trainables.config import TrialConfig
    from trainables.features import FeatureExtractor
    from trainables.models import resnet_backbone, scored_layer
    from trainables.probes.voc07 import Voc07BoxesProbe, Voc07Probe

    trunk = resnet_backbone("resnet18")[0].eval()
    shared = FeatureExtractor(scored_layer(trunk, "pool"), "cpu", 4, eval_transform(32), trunk=trunk, image_size=32)
    trial = TrialConfig()
    goyal = Voc07Probe().view(shared, trial)  # the default protocol
    assert (goyal.whole_image, goyal.layer) == (True, "layer4_2x2") and goyal is not shared
    assert Voc07BoxesProbe(protocol="fast").view(shared, trial) is shared
    # A trial scoring another layer keeps it (globally pooled), in the whole image.
    other = Voc07Probe().view(shared, trial.override({"eval_layer": "layer3"}))
    assert (other.whole_image, other.layer) == (True, "layer3")

    from torchvision.io import write_png
    good, bad = tmp_path / "a.png", tmp_path / "b.png"
    write_png(torch.zeros(3, 40, 60, dtype=torch.uint8), str(good))
    bad.write_bytes(b"not an image")
    x, index = goyal([good, bad])
    assert x.shape == (1, 512) and list(index) == [0]
    assert goyal.skipped == 1 and shared.skipped == 1  # reported once, by the trial's path


def test_protocol_is_a_checked_logged_field_of_both_voc_probes():
    from orchestrator.config import PRESETS, check
    from datasets.registry import ConfigError
    from trainables.config import TrialConfig

    trial = TrialConfig().override({"probes": "voc07,voc07_boxes", "probes.voc07.protocol": "fast"})
    flat = trial.flat()
    assert flat["probes.voc07.protocol"] == "fast" and flat["probes.voc07_boxes.protocol"] == "goyal2019"
    bad = trial.override({"probes.voc07_boxes.protocol": "goyal"})
    with pytest.raises(ConfigError, match=r"probes\.voc07_boxes\.protocol='goyal' is not one of goyal2019, fast"):
        check([bad])
    # The demo preset keeps the cheaper protocol; the class default is the paper's.
    assert {p.name: p.protocol for p in PRESETS["default"].probes if hasattr(p, "protocol")} == {
        "voc07": "fast", "voc07_boxes": "fast"}


def test_ray_data_features_view_has_its_own_cache_key_and_actor_settings(tmp_path):
    from dataclasses import dataclass

    from trainables.features import RayDataFeatures
    from trainables.models import resnet_backbone

    @dataclass
    class Weights:  # what RayDataFeatures needs of a backbone's weights
        arch: str = "resnet18"
        digest: str = "abc"

        def build(self):
            return resnet_backbone(self.arch)[0].eval()

    shared = RayDataFeatures(Weights(), 32, 8, cache=str(tmp_path))
    view = shared.view(True, "layer4_2x2")
    assert shared.view(False, "pool") is shared
    assert (view.whole_image, view.layer, view.parent) == (True, "layer4_2x2", shared)
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    assert view._key([image]) != shared._key([image])  # cached apart: another layer and transform
    assert "CenterCrop" in repr(shared.transform) and "CenterCrop" not in repr(view.transform)


def test_in_process_features_are_extract_features_and_cached_like_ray_datas(tmp_path):
    """A small single-node evaluation extracts in its own process (no actor pool) through the
    same cache: a second instance on the same weights and images extracts nothing."""
    from dataclasses import dataclass

    import torch
    from PIL import Image

    from trainables.augment import eval_transform
    from trainables.features import RayDataFeatures, extract_features
    from trainables.models import resnet_backbone

    @dataclass
    class Weights:
        arch: str = "resnet18"
        digest: str = "in-process"

        def build(self):
            torch.manual_seed(0)
            return resnet_backbone(self.arch)[0].eval()

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(paths[-1])
    cache = tmp_path / "cache"
    first = RayDataFeatures(Weights(), 32, 2, cache=str(cache), in_process=True)
    features, labels = first(paths)
    expected, _, _ = extract_features(Weights().build(), paths, 2, "cpu", transform=eval_transform(32))
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    assert labels.tolist() == [0, 1, 2, 3, 4] and (first.extracted, first.reused) == (5, 0)
    again = RayDataFeatures(Weights(), 32, 2, cache=str(cache), in_process=True)
    np.testing.assert_array_equal(again(paths)[0], features)
    assert (again.extracted, again.reused) == (0, 5)
    assert again.view(True, "pool").in_process  # a view extracts the same way
