"""Frozen-feature evaluation: the linear probe and feature extraction."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.augment import eval_transform
from trainables.features import extract_features
from trainables.models import resnet_backbone
from trainables.probes.linear import linear_probe_top1


def blobs(seed: int, n_per_class: int = 30, classes: int = 4, dim: int = 16, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(0, 4, (classes, dim))
    y = np.repeat(np.arange(classes), n_per_class)
    return (centres[y] + rng.normal(0, spread, (len(y), dim))).astype(np.float32), y


def test_linear_probe_scores_held_out_accuracy_deterministically():
    train_x, train_y = blobs(1)
    test_x, test_y = blobs(2)
    top1 = linear_probe_top1(train_x, train_y, test_x, test_y, seed=0)
    assert top1 >= 95.0
    assert linear_probe_top1(train_x, train_y, test_x, test_y, seed=0) == top1
    # Predicting the wrong classes everywhere scores 0: the score is measured, not fitted.
    assert linear_probe_top1(train_x, train_y, test_x, (test_y + 1) % 4, seed=0) <= 5.0
    # Labels unrelated to the features give about chance (25%) on held-out data.
    shuffled = np.random.default_rng(3).permutation(train_y)
    assert linear_probe_top1(train_x, shuffled, test_x, test_y, seed=0) <= 50.0


def test_linear_probe_rejects_malformed_input():
    x, y = blobs(1)
    with pytest.raises(ValueError, match="same d"):
        linear_probe_top1(x, y, x[:, :8], y)
    with pytest.raises(ValueError, match="differ in length"):
        linear_probe_top1(x, y[:-1], x, y)
    with pytest.raises(ValueError, match="two classes"):
        linear_probe_top1(x, np.zeros_like(y), x, y)


def test_extract_features_is_frozen_batch_independent_and_skips_corrupt_images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        path = tmp_path / f"{i}.png"
        if i == 3:
            path.write_bytes(b"\x89PNG broken")  # undecodable: must be skipped and counted
        else:
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    torch.manual_seed(0)
    backbone, dim = resnet_backbone("resnet18")
    backbone.train()

    features, index, skipped = extract_features(backbone, paths, batch_size=4, device="cpu",
                                                transform=eval_transform(32))
    assert features.shape == (6, dim) and features.dtype == np.float32
    assert index.tolist() == [0, 1, 2, 4, 5, 6] and skipped == 1
    assert backbone.training  # the caller's mode is restored
    assert all(p.grad is None for p in backbone.parameters())
    # Eval-mode BN: an image's features do not depend on its batch-mates.
    single, index_single, _ = extract_features(backbone, paths, batch_size=1, device="cpu",
                                               transform=eval_transform(32))
    assert index_single.tolist() == index.tolist()
    np.testing.assert_allclose(single, features, rtol=1e-4, atol=1e-5)

    with pytest.raises(ValueError, match="needs a transform"):
        extract_features(backbone, paths, batch_size=4, device="cpu")


def sklearn_top1(train_x, train_y, test_x, test_y, seed=0, max_iter=1000):
    """The linear probe computed apart: z-scores by hand, then sklearn's logistic regression."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    mean, std = train_x.mean(0), train_x.std(0)
    std[std == 0] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(max_iter=max_iter, random_state=seed).fit((train_x - mean) / std, train_y)
    return 100.0 * np.mean(model.predict((test_x - mean) / std) == test_y)


def test_label_efficiency_matches_sklearn_on_nested_stratified_rows():
    from datasets.subsets import nested_per_class
    from trainables.probes.linear import label_efficiency_top1

    train_x, train_y = blobs(1, n_per_class=20, spread=3.0)
    test_x, test_y = blobs(2, n_per_class=20, spread=3.0)
    curve = label_efficiency_top1(train_x, train_y, test_x, test_y, (1, 4, 20), subset_seed=5, seed=0)
    assert list(curve) == [1, 4, 20]
    for n, top1 in curve.items():
        rows = nested_per_class(train_y, n, 5)
        assert np.bincount(train_y[rows]).tolist() == [n] * 4  # stratified: n of each class
        assert top1 == pytest.approx(sklearn_top1(train_x[rows], train_y[rows], test_x, test_y), abs=1e-9)
    # All 20 per class is the whole training set: the plain probe's figure.
    assert curve[20] == pytest.approx(linear_probe_top1(train_x, train_y, test_x, test_y, seed=0))
    # One label per class scores below twenty on overlapping blobs (a curve, not a constant).
    assert curve[1] < curve[20]


def test_labelled_subsets_are_nested_fixed_and_refuse_a_short_class():
    from datasets.subsets import nested_per_class

    labels = np.array([0] * 12 + [1] * 7 + [2] * 30)
    rows = {n: set(nested_per_class(labels, n, seed=0).tolist()) for n in (1, 3, 7)}
    assert rows[1] < rows[3] < rows[7]
    assert all(np.bincount(labels[sorted(r)], minlength=3).tolist() == [n] * 3 for n, r in rows.items())
    assert set(nested_per_class(labels, 3, seed=0).tolist()) == rows[3]  # fixed: drawn again, the same
    assert set(nested_per_class(labels, 3, seed=1).tolist()) != rows[3]  # the label seed draws them
    with pytest.raises(ValueError, match="class 1 has 7 labelled items, fewer than 8 per class"):
        nested_per_class(labels, 8, seed=0)


def fake_image_folder(root, per_class: dict[str, int]):
    """`root/{train,val}/<class>/<i>.png`, empty files: listed, never decoded."""
    for split in ("train", "val"):
        for name, n in per_class.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                (root / split / name / f"{i}.png").touch()
    return root


def test_linear_probe_logs_one_metric_per_label_count_and_checks_counts_before_training(tmp_path):
    from datasets.errors import DatasetFormatError
    from orchestrator.config import ConfigError, TrialConfig, check
    from trainables.probes.linear import LinearProbe

    root = fake_image_folder(tmp_path / "probe", {"a": 10, "b": 10, "c": 6})

    class BlobFeatures:  # features of a dataset's images: a blob per class label
        transform = None

        def __init__(self):
            self.asked = []  # the images of each call

        def __call__(self, dataset):
            self.asked.append(list(dataset.paths))
            y = np.asarray(dataset.labels)
            rng = np.random.default_rng(len(y))
            return np.random.default_rng(0).normal(0, 4, (3, 8))[y] + rng.normal(0, 1, (len(y), 8)), y

    trial = TrialConfig()
    probe = LinearProbe(labels_per_class="5,2")
    assert probe.read(root, trial) == {"a": 10, "b": 10, "c": 6}
    features = BlobFeatures()
    metrics = probe.evaluate(root, features, trial)
    # The images it announces (embedded ahead in one run by RayDataFeatures.prefetch) are
    # the ones it asks for, set by set.
    assert probe.image_paths(root, trial) == features.asked and len(features.asked) == 2
    assert sorted(metrics) == ["probe/linear_top1", "probe/linear_top1_at_2", "probe/linear_top1_at_5"]
    assert LinearProbe().evaluate(root, BlobFeatures(), trial) == {"probe/linear_top1": metrics["probe/linear_top1"]}
    with pytest.raises(DatasetFormatError, match=r"labels_per_class=7 needs 7 training images per class; c \(6\)"):
        LinearProbe(labels_per_class="7").read(root, trial)
    for bad, why in (("0,5", "distinct counts of at least 1"), ("5,5", "distinct"), ("a", "comma-separated")):
        with pytest.raises(ConfigError, match=f"probes.linear.labels_per_class={bad!r} must .*{why}"):
            check([TrialConfig().override({"probes.linear.labels_per_class": bad})])
