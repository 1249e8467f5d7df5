"""Random-label pretraining (``method=supervised_random_labels``): the labels the training
loop sees are one fixed permutation of the true ones; everything else is ``supervised``."""
from __future__ import annotations

from collections import Counter

import torch

from datasets.image_folder import scan_image_folder
from datasets.sources.base import split_dir
from tests.tiny import image_folder_trial, random_image_folder
from trainables.methods.supervised import shuffled_labels
from trainables.pretrain import build_model, pretrain_loader, seed_everything


def _labels_seen(trial, epochs: int) -> list[dict[int, int]]:
    """Per epoch, image index -> the label the loader gave it (the sampler's order and the
    loader's batches read together)."""
    loader = pretrain_loader(trial, world_size=1, rank=0, loader_workers=0)
    out = []
    for epoch in range(epochs):
        seed_everything(trial.seed, 0, epoch)
        loader.sampler.set_epoch(epoch)
        order = list(loader.sampler)
        labels = torch.cat([batch_labels for _, batch_labels, _ in loader]).tolist()
        out.append(dict(zip(order, labels)))
    return out


def test_training_sees_one_fixed_permutation_of_the_true_labels(tmp_path):
    root = random_image_folder(tmp_path / "images", classes=4, per_class=6, size=36)
    true = [label for _, label in scan_image_folder(split_dir(root, "train"))[0]]
    trial = image_folder_trial(root, method="supervised_random_labels", seed=3)
    assert trial.problems() == []
    first, second = _labels_seen(trial, epochs=2)
    assert len(first) == len(true)  # 24 images, batches of 4: every image in each epoch
    assert first == second  # the same wrong label every epoch
    seen = [first[i] for i in range(len(true))]
    assert Counter(seen) == Counter(true) and seen != true  # a permutation, not the truth
    assert sum(s != t for s, t in zip(seen, true)) >= len(true) // 2
    assert seen == shuffled_labels(true, 3)  # drawn from the trial's seed: every worker, every resume
    assert [first[i] for i in range(len(true))] != shuffled_labels(true, 4)


def test_the_plain_method_is_supervised_bit_for_bit_but_for_the_labels(tmp_path):
    root = random_image_folder(tmp_path / "images", classes=3, per_class=4, size=36)
    true = [label for _, label in scan_image_folder(split_dir(root, "train"))[0]]
    plain = image_folder_trial(root, method="supervised", seed=1)
    shuffled = image_folder_trial(root, method="supervised_random_labels", seed=1)
    assert [_labels_seen(plain, 1)[0][i] for i in range(len(true))] == true
    for a, b in zip(build_model(plain).state_dict().values(), build_model(shuffled).state_dict().values()):
        assert torch.equal(a, b)  # the same initial weights
    first_batches = []
    for trial in (plain, shuffled):
        seed_everything(trial.seed, 0, 0)
        first_batches.append(next(iter(pretrain_loader(trial, 1, 0, 0)))[0])
    assert torch.equal(*first_batches)  # the same images, crops and flips in the same order
