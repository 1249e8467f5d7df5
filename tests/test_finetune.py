"""The fine-tuning probe (`probe/finetune_top1_at_<N>`): its training checked against an
independent computation, its accuracy counted by hand, and its refusals."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from trainables.probes.finetune import FinetuneProbe, FinetuneSettings, finetune_classifier, pooled_width, top1


class Items(Dataset):
    """A list of `(image, label)` items (None: an unreadable image) as a dataset."""

    def __init__(self, items):
        self.items = list(items)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def tensor_set(seed: int, n_per_class: int = 8, classes: int = 3):
    """Tiny 3 x 4 x 4 "images": class k is brightest in channel k, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = rng.normal(0, 1, (len(y), 3, 4, 4)).astype(np.float32)
    x[np.arange(len(y)), y] += 2.0
    return Items((torch.from_numpy(image), int(label)) for image, label in zip(x, y))


def tiny_trunk(seed: int = 0) -> nn.Module:
    """image -> 5 features, with a BN whose running statistics are not the identity (so a
    BN left in train mode would move the 'frozen' features)."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(48, 5), nn.BatchNorm1d(5), nn.ReLU())
    trunk[2].running_mean.normal_()
    trunk[2].running_var.uniform_(0.5, 2.0)
    return trunk.eval()


def softmax_regression_by_hand(f: np.ndarray, y: np.ndarray, classes: int, steps: int, lr: float,
                               momentum: float, weight_decay: float) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch softmax regression from zero: cross-entropy gradient (p - onehot) / n,
    weight decay added to the gradient, heavy-ball momentum and a cosine learning rate
    (SGDR, Loshchilov & Hutter 2017, Eq. 5), in float64 numpy."""
    f = f.astype(np.float64)
    w, b = np.zeros((classes, f.shape[1])), np.zeros(classes)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    onehot = np.eye(classes)[y]
    for t in range(steps):
        z = f @ w.T + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        gw = (p - onehot).T @ f / len(f) + weight_decay * w
        gb = (p - onehot).mean(axis=0) + weight_decay * b
        vw, vb = momentum * vw + gw, momentum * vb + gb
        rate = lr * (1 + math.cos(math.pi * t / steps)) / 2
        w, b = w - rate * vw, b - rate * vb
    return w, b


def test_a_frozen_backbone_trains_the_head_as_softmax_regression_on_fixed_features_does():
    train, val = tensor_set(0), tensor_set(1)
    trunk = tiny_trunk()
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    settings = FinetuneSettings(epochs=15, batch_size=len(train), head_lr=0.5, backbone_lr=0.0,
                                momentum=0.9, weight_decay=1e-3)
    model = finetune_classifier(trunk, train, 3, 5, settings, seed=0)
    # The trunk (weights and BN statistics) is untouched.
    assert all(torch.equal(before[k], v) for k, v in trunk.state_dict().items())

    x = torch.stack([image for image, _ in train])
    y = np.asarray([label for _, label in train])
    with torch.no_grad():
        f = trunk(x).numpy()
    w, b = softmax_regression_by_hand(f, y, 3, steps=15, lr=0.5, momentum=0.9, weight_decay=1e-3)
    np.testing.assert_allclose(model[1].weight.detach().numpy(), w, atol=1e-5)
    np.testing.assert_allclose(model[1].bias.detach().numpy(), b, atol=1e-5)
    with torch.no_grad():
        fv = trunk(torch.stack([image for image, _ in val])).numpy()
    by_hand = 100.0 * np.mean((fv @ w.T + b).argmax(axis=1) == np.asarray([label for _, label in val]))
    assert top1(model, val, batch_size=7) == pytest.approx(by_hand)
    assert by_hand > 60  # the case is informative: the head learned something

    # With a backbone learning rate the trunk does move.
    moved = finetune_classifier(tiny_trunk(), train, 3, 5, FinetuneSettings(epochs=3, batch_size=8), seed=0)
    assert not torch.equal(moved[0][1].weight, trunk[1].weight)


def test_top1_counts_correct_predictions_and_leaves_out_unreadable_images():
    rng = np.random.default_rng(2)
    weights = rng.normal(0, 1, (4, 48)).astype(np.float32)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 4, bias=False))
    model[1].weight.data = torch.from_numpy(weights)
    images = rng.normal(0, 1, (13, 3, 4, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 13)
    val = Items((torch.from_numpy(i), int(lab)) for i, lab in zip(images, labels))
    correct = sum(int(np.argmax(weights @ image.ravel()) == label) for image, label in zip(images, labels))
    assert top1(model, val, batch_size=4) == pytest.approx(100.0 * correct / 13)
    assert top1(model, Items([*val.items[:5], None, *val.items[5:]]), batch_size=4) == pytest.approx(100.0 * correct / 13)
    # Order of the held-out set does not move it.
    order = rng.permutation(13)
    assert top1(model, Items(val[i] for i in order), batch_size=5) == top1(model, val, batch_size=4)


def test_training_is_seeded_and_leaves_the_callers_random_state():
    train = tensor_set(0, n_per_class=10)
    settings = FinetuneSettings(epochs=3, batch_size=8)
    trunk = tiny_trunk()
    state = torch.random.get_rng_state()
    a = finetune_classifier(trunk, train, 3, 5, settings, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = finetune_classifier(tiny_trunk(), train, 3, 5, settings, seed=4)
    c = finetune_classifier(tiny_trunk(), train, 3, 5, settings, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a[1].weight, c[1].weight)  # another seed: another batch order


def coloured_folder(root, per_split: dict[str, int], seed: int = 0):
    """`root/{train,val}/<colour>/<i>.png`, 40 x 40 images of a noisy red, green or blue."""
    rng = np.random.default_rng(seed)
    for split, n in per_split.items():
        for channel, name in enumerate(("red", "green", "blue")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 90, (40, 40, 3))
                pixels[..., channel] += 160
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.png")
    return root


def test_the_probe_fine_tunes_the_trials_backbone_well_above_chance_and_deterministically(tmp_path):
    from orchestrator.config import TrialConfig
    from trainables.augment import eval_transform
    from trainables.features import FeatureExtractor

    root = coloured_folder(tmp_path / "probe", {"train": 6, "val": 8})
    torch.manual_seed(0)  # a small conv trunk stands for the trial's ResNet: the probe takes any
    trunk = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    features = FeatureExtractor(trunk, "cpu", 16, eval_transform(32), trunk=trunk, image_size=32)
    trial = TrialConfig().override({"image_size": 32, "seed": 1})
    probe = FinetuneProbe(labels_per_class="2,6", epochs=8, batch_size=6)
    assert probe.problems(trial) == []
    assert probe.read(root, trial) == {"red": 6, "green": 6, "blue": 6}
    metrics = probe.evaluate(root, features, trial)
    assert sorted(metrics) == ["probe/finetune_top1_at_2", "probe/finetune_top1_at_6"]
    assert metrics["probe/finetune_top1_at_6"] >= 33.3 + 40  # chance is a third
    # The evaluated network, which the trial's other probes read, is left as it was.
    assert all(torch.equal(before[k], v) for k, v in trunk.state_dict().items())
    assert FinetuneProbe(labels_per_class="6", epochs=8, batch_size=6).evaluate(root, features, trial) == {
        "probe/finetune_top1_at_6": metrics["probe/finetune_top1_at_6"]}
    assert pooled_width(trunk, 32) == 8


def test_the_cached_extraction_path_hands_a_copy_of_its_trunk(tmp_path):
    from trainables.evaluation import TrainedBackbone
    from trainables.features import RayDataFeatures
    from trainables.models import resnet_backbone

    trunk, _ = resnet_backbone("resnet18")
    features = RayDataFeatures(TrainedBackbone(trunk, "resnet18", "d"), 32, 8, cache=str(tmp_path), in_process=True)
    copy = features.trunk_copy()
    assert copy is not trunk and features.device == "cpu"
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), trunk.state_dict().values()))


def test_bad_settings_are_refused_before_any_trial(tmp_path):
    from datasets.errors import DatasetFormatError
    from orchestrator.config import ConfigError, TrialConfig, check
    from tests.test_probe import fake_image_folder

    for key, value, why in (("epochs", 0, "epochs=0 must be at least 1"),
                            ("batch_size", 1, "batch_size=1 must be at least 2"),
                            ("head_lr", 0.0, "head_lr=0.0 must be above 0"),
                            ("backbone_lr", -0.1, "backbone_lr=-0.1 must be at least 0"),
                            ("momentum", 1.0, r"momentum=1.0 must be in \[0, 1\)"),
                            ("weight_decay", -1.0, "weight_decay=-1.0 must be at least 0"),
                            ("labels_per_class", "", "must list at least one count"),
                            ("labels_per_class", "5,5", "distinct counts")):
        with pytest.raises(ConfigError, match=f"probes.finetune.{why}" if key != "labels_per_class" else why):
            check([TrialConfig().override({"probes": "finetune", f"probes.finetune.{key}": value})])
    root = fake_image_folder(tmp_path / "probe", {"a": 10, "b": 4})
    with pytest.raises(DatasetFormatError, match=r"labels_per_class=2,5 needs 5 training images per class; b \(4\)"):
        FinetuneProbe(labels_per_class="2,5").read(root, TrialConfig())


def test_the_score_commands_path_fine_tunes_a_checkpoint_file(tmp_path):
    """`python -m orchestrator.score CHECKPOINT --set probes=finetune ...`, less Ray and
    MLflow: its checks, its weights (`load_backbone_weights`) and its extraction path."""
    import torchvision

    from orchestrator.config import TrialConfig
    from orchestrator.score import evaluation_problems
    from trainables.evaluation import evaluate
    from trainables.features import RayDataFeatures
    from trainables.weights import load_backbone_weights

    root = coloured_folder(tmp_path / "probe", {"train": 2, "val": 2})
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "torchvision.pth")
    weights = load_backbone_weights(tmp_path / "torchvision.pth")
    trial = TrialConfig().override({"arch": weights.arch, "image_size": 32, "invariances": "", "probes": "finetune",
                                    "data.probe": "image-folder", "data.probe.root": str(root),
                                    "probes.finetune.labels_per_class": "2", "probes.finetune.epochs": 1,
                                    "probes.finetune.batch_size": 6})
    assert evaluation_problems(trial) == []
    features = RayDataFeatures(weights, 32, 8, cache=str(tmp_path / "cache"), in_process=True)
    metrics = evaluate(None, trial, "cpu", features=features)
    assert sorted(metrics) == ["data/skipped_images", "probe/finetune_top1_at_2"]
    assert 0 <= metrics["probe/finetune_top1_at_2"] <= 100 and features.extracted == 0  # no frozen features
