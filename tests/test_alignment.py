"""Covariance alignment of first-layer weights with the data (Maennel et al. 2020), against
computations by loops on small arrays."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from trainables.alignment import covariance_alignment, first_layer_alignment, patch_covariance, weight_covariance


def _spd(d: int, rng) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_a_covariance_is_aligned_with_itself_and_with_anything_sharing_its_eigenvectors():
    rng = np.random.default_rng(0)
    sigma = _spd(6, rng)
    assert covariance_alignment(sigma, sigma) == pytest.approx(1.0)
    _, u = np.linalg.eigh(sigma)
    other_eigenvalues = u @ np.diag(rng.uniform(0.1, 5.0, 6)) @ u.T
    assert covariance_alignment(other_eigenvalues, sigma) == pytest.approx(1.0)
    assert covariance_alignment(np.eye(6), sigma) == pytest.approx(1.0)  # isotropic: aligned with all


def test_invariant_to_scaling_and_lower_for_rotated_eigenvectors():
    rng = np.random.default_rng(1)
    data, weights = _spd(5, rng), _spd(5, rng)
    base = covariance_alignment(weights, data)
    assert covariance_alignment(30.0 * weights, 0.2 * data) == pytest.approx(base, rel=1e-10)
    q = ortho_group.rvs(5, random_state=4)
    assert covariance_alignment(q @ data @ q.T, q @ data @ q.T) == pytest.approx(1.0)
    assert covariance_alignment(q @ data @ q.T, data) < 0.9  # rotated away: no longer aligned
    assert 0.0 < base < 1.0


def test_equals_the_eigenbasis_sums_by_loops():
    rng = np.random.default_rng(2)
    data, weights = _spd(4, rng), _spd(4, rng)
    values, vectors = np.linalg.eigh(data)
    u = [vectors[:, i] for i in range(4)]
    entries = [[float(u[i] @ weights @ u[j]) for j in range(4)] for i in range(4)]
    diagonal = sum(entries[i][i] ** 2 for i in range(4))  # distinct eigenvalues: 1-d eigenspaces
    assert len(set(np.round(values, 6))) == 4
    assert covariance_alignment(weights, data) == pytest.approx(diagonal / sum(e ** 2 for row in entries for e in row))


def test_repeated_data_eigenvalues_form_one_eigenspace():
    # Data isotropic in its first two directions: a weight covariance mixing only those two is aligned.
    data = np.diag([3.0, 3.0, 1.0])
    mixing = np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    assert covariance_alignment(mixing, data) == pytest.approx(1.0)
    assert covariance_alignment(mixing, np.diag([3.0, 2.0, 1.0])) < 1.0


def test_patch_and_weight_covariances_match_loops_over_patches_and_filters():
    images = torch.rand(2, 2, 5, 6, generator=torch.Generator().manual_seed(0))
    k, stride = 3, 2
    patches = [images[n, :, r:r + k, c:c + k].reshape(-1).double().numpy()
               for n in range(2) for r in range(0, 5 - k + 1, stride) for c in range(0, 6 - k + 1, stride)]
    mean = sum(patches) / len(patches)
    expected = sum(np.outer(p - mean, p - mean) for p in patches) / (len(patches) - 1)
    np.testing.assert_allclose(patch_covariance(images, k, stride), expected, rtol=1e-10)

    weight = torch.randn(7, 2, 3, 3, generator=torch.Generator().manual_seed(1))
    filters = [weight[i].reshape(-1).double().numpy() for i in range(7)]
    mean = sum(filters) / 7
    expected = sum(np.outer(f - mean, f - mean) for f in filters) / 6
    np.testing.assert_allclose(weight_covariance(weight), expected, rtol=1e-10)


def test_first_layer_alignment_of_a_resnet_is_a_share():
    from trainables.models import resnet_backbone

    torch.manual_seed(0)
    trunk, _ = resnet_backbone("resnet18")
    images = torch.rand(2, 3, 32, 32)
    score = first_layer_alignment(trunk, images)
    assert 0.0 < score < 0.6  # random filters: far from aligned
    # Filters replaced by patches' principal directions: aligned.
    data_cov = patch_covariance(images, 7, 2, 3)
    _, u = np.linalg.eigh(data_cov)
    with torch.no_grad():
        filters = (u[:, -64:] * np.linspace(1, 3, 64)).T  # 64 eigenvectors, scaled unequally
        trunk.conv1.weight.copy_(torch.from_numpy(filters).reshape(64, 3, 7, 7))
    assert first_layer_alignment(trunk, images) > 0.95  # the mean filter, removed by the covariance, costs a little


def test_the_alignment_part_reports_the_first_layers_alignment_on_the_pretraining_images(data_cache, one_torch_thread):
    from datasets.image_folder import ImageFolderDataset
    from tests.tiny import tiny_config
    from trainables.augment import eval_transform
    from trainables.evaluation import evaluate
    from trainables.models import resnet_backbone
    from trainables.probes.alignment import METRIC

    trial = tiny_config(data_cache).override({"invariances": "", "probes": "alignment",
                                              "probes.alignment.max_images": 1000})
    assert trial.problems() == []
    torch.manual_seed(0)
    backbone, _ = resnet_backbone(trial.arch)
    metrics = evaluate(backbone, trial, "cpu")
    pretrain = ImageFolderDataset(trial.root("pretrain") / "train", transform=eval_transform(trial.image_size))
    images = torch.stack([pretrain[i][0] for i in range(len(pretrain))])  # all 32: the sample holds every image
    assert metrics[METRIC] == pytest.approx(first_layer_alignment(backbone, images), rel=1e-12)
    # Through the scored-layer wrapper of another eval_layer, the same first convolution.
    assert evaluate(backbone, trial.override({"eval_layer": "layer3"}), "cpu")[METRIC] == pytest.approx(metrics[METRIC])
    # A smaller sample is a fixed one (the same images for every trial) and a subset.
    few = trial.probes[0].__class__(max_images=6)
    sample = few.sample(trial.root("pretrain"), eval_transform(trial.image_size))
    assert sample.shape == (6, 3, 32, 32)
    assert torch.equal(sample, few.sample(trial.root("pretrain"), eval_transform(trial.image_size)))
    assert all(any(torch.equal(image, other) for other in images) for image in sample)
    one_image = trial.override({"probes.alignment.max_images": 1})
    assert any("max_images=1 must be at least 2" in p for p in one_image.problems())


def test_a_network_without_a_convolution_has_no_first_layer():
    from trainables.alignment import first_conv

    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    assert first_conv(mlp) is None
    with pytest.raises(ValueError, match="no convolution"):
        first_layer_alignment(mlp, torch.rand(2, 3, 2, 2))
