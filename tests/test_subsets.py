"""Nested, fixed subsets (Cole et al. 2022, Sec. 3): the pretraining fraction and the
labelled subsets of the label-efficiency probe."""
from __future__ import annotations

import numpy as np
import pytest

from datasets.subsets import nested_per_class, nested_subset, subset_size
from orchestrator.config import ConfigError, TrialConfig, check
from tests.tiny import image_folder_trial, random_image_folder


def test_nested_subset_sizes_are_exact_ceilings():
    for n in (1, 7, 10, 100, 1001):
        for fraction in (0.01, 0.1, 0.25, 0.3, 0.5, 0.7, 1.0):
            expected = int(np.ceil(round(fraction * n, 9)))
            assert len(nested_subset(n, fraction, seed=0)) == expected == subset_size(n, fraction)
    assert subset_size(10, 0.3) == 3  # not ceil(3.0000000000000004) = 4


def test_nested_subsets_are_nested_and_the_whole_set_at_one():
    n = 200
    quarter, half, whole = (set(nested_subset(n, f, seed=3).tolist()) for f in (0.25, 0.5, 1.0))
    assert quarter < half < whole == set(range(n))
    # Another subset seed draws other images (but the same sizes).
    other = set(nested_subset(n, 0.5, seed=4).tolist())
    assert len(other) == len(half) and other != half
    # A prefix of a permutation, not a stride: the kept indices spread over the set.
    assert min(half) < n // 4 and max(half) > 3 * n // 4


def test_nested_subset_refuses_a_fraction_outside_zero_one():
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
            nested_subset(10, bad, seed=0)


def test_pretrain_fraction_keeps_the_same_images_for_every_trial_seed(tmp_path):
    from trainables.pretrain import train_set

    root = random_image_folder(tmp_path / "data", classes=2, per_class=8, size=8)
    whole = train_set(image_folder_trial(root))
    assert len(whole) == 16
    kept = {}
    for seed in (0, 1):
        subset = train_set(image_folder_trial(root, seed=seed, pretrain_fraction=0.5))
        assert len(subset) == 8
        kept[seed] = [subset.dataset.paths[i] for i in subset.indices]
    assert kept[0] == kept[1]  # static across experiments: the trial seed does not draw the subset
    quarter = train_set(image_folder_trial(root, seed=1, pretrain_fraction=0.25))
    assert {quarter.dataset.paths[i] for i in quarter.indices} < set(kept[0])  # nested
    other = train_set(image_folder_trial(root, pretrain_fraction=0.5, pretrain_subset_seed=1))
    assert [other.dataset.paths[i] for i in other.indices] != kept[0]


def test_a_bad_pretrain_fraction_is_a_config_error_before_ray():
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match=rf"pretrain_fraction={bad} must be in \(0, 1\]"):
            check([TrialConfig().override({"pretrain_fraction": bad})])
    with pytest.raises(ConfigError, match="pretrain_subset_seed=-1 must be at least 0"):
        check([TrialConfig().override({"pretrain_subset_seed": -1})])
    # Typed from the command line's strings, and logged as params.
    trial = TrialConfig().override({"pretrain_fraction": "0.25"})
    assert trial.pretrain_fraction == 0.25 and trial.flat()["pretrain_fraction"] == 0.25
