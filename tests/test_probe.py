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
