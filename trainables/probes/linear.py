"""The linear probe: top-1 of a softmax classifier on frozen features (paper Sec. 5), and
its label-efficiency curve (Cole et al. 2022, Sec. 4.1): the same probe fit on N labelled
images per class, for a list of N, on nested, fixed labelled subsets."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from datasets.errors import DatasetFormatError
from datasets.sources.base import IMAGE_FOLDER, DataRole, split_dir
from datasets.registry import ReportColumn
from datasets.subsets import nested_per_class
from trainables.probes.base import PROBES, Probe


def linear_probe_top1(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                      seed: int = 0, max_iter: int = 1000) -> float:
    """Top-1 accuracy (percent) on `test` of a softmax classifier fit on `train`.

    Features are standardised (a frozen representation's units have arbitrary scales),
    then multinomial logistic regression (L-BFGS, deterministic) is fit.
    """
    train_x, test_x = np.asarray(train_x), np.asarray(test_x)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be N x d with the same d, got {train_x.shape} and {test_x.shape}")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("features and labels differ in length")
    if len(np.unique(train_y)) < 2:
        raise ValueError("the probe's training set needs at least two classes")
    if len(test_x) == 0:
        raise ValueError("the probe's test set is empty")

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    with warnings.catch_warnings():
        # Separable features stop L-BFGS at max_iter; the accuracy is still meaningful.
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(train_x, train_y)
    return float(100.0 * np.mean(probe.predict(test_x) == test_y))


def label_efficiency_top1(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                          per_class: tuple[int, ...], subset_seed: int = 0, seed: int = 0,
                          max_iter: int = 1000) -> dict[int, float]:
    """N -> top-1 (percent) of the linear probe fit on N training rows of each class.

    The rows are `datasets.subsets.nested_per_class(train_y, N, subset_seed)`: stratified,
    and nested (a smaller N's rows are among a larger N's), the same for every trial seed,
    as Cole et al.'s labelled subsets are. Every N is scored on the whole `test` set.
    """
    train_x, train_y = np.asarray(train_x), np.asarray(train_y)
    out = {}
    for n in per_class:
        rows = nested_per_class(train_y, n, subset_seed)
        out[n] = linear_probe_top1(train_x[rows], train_y[rows], test_x, test_y, seed=seed, max_iter=max_iter)
    return out


def parse_per_class(text: str) -> tuple[int, ...]:
    """`"1,5,20"` -> (1, 5, 20); "" -> (). Each count a distinct positive integer, else ValueError."""
    try:
        counts = tuple(int(c) for c in str(text).split(",") if c.strip())
    except ValueError:
        raise ValueError(f"labels_per_class={text!r} must be comma-separated integers") from None
    if any(c < 1 for c in counts) or len(set(counts)) < len(counts):
        raise ValueError(f"labels_per_class={text!r} must list distinct counts of at least 1")
    return tuple(sorted(counts))


def labelled_per_class(root: Path, labels_per_class: str) -> dict[str, int]:
    """Training images per class of the image folder `root` (listed, not decoded), {} when
    `labels_per_class` is empty; a class with fewer than the largest of `labels_per_class`
    is a `DatasetFormatError` naming it (label-efficiency probes refuse it before any trial)."""
    from datasets.image_folder import scan_image_folder

    counts = parse_per_class(labels_per_class)
    if not counts:
        return {}
    samples, classes = scan_image_folder(split_dir(root, "train"))
    per_class = {name: 0 for name in classes}
    for _, label in samples:
        per_class[classes[label]] += 1
    short = {name: n for name, n in per_class.items() if n < max(counts)}
    if short:
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(short.items()))
        raise DatasetFormatError(f"{split_dir(root, 'train')}: labels_per_class={labels_per_class} needs "
                                 f"{max(counts)} training images per class; {listed} have fewer")
    return per_class


@PROBES.register
@dataclass(frozen=True)
class LinearProbe(Probe):
    """``probe/linear_top1``: fit on the role's ``train/`` split, scored on ``val/``; with
    ``labels_per_class`` (e.g. ``"1,5,20"``) also ``probe/linear_top1_at_<N>``, fit on N
    training images per class (`label_efficiency_top1`; `label_subset_seed` draws them)."""

    name: ClassVar[str] = "linear"
    columns: ClassVar[tuple[ReportColumn, ...]] = (ReportColumn(("probe/linear_top1",), "linear top-1", "linear"),)
    roles: ClassVar[dict[str, DataRole]] = {"probe": DataRole(IMAGE_FOLDER, "synthetic-objects", ("train", "val"))}
    max_iter: int = 1000
    labels_per_class: str = ""
    label_subset_seed: int = 0

    def problems(self, trial: Any) -> list[str]:
        out = [] if self.max_iter >= 1 else [f"max_iter={self.max_iter} must be at least 1"]
        try:
            parse_per_class(self.labels_per_class)
        except ValueError as err:
            out.append(str(err))
        if self.label_subset_seed < 0:
            out.append(f"label_subset_seed={self.label_subset_seed} must be at least 0")
        return out

    def read(self, root: Path, trial: Any) -> dict[str, int]:
        """Training images per class (`labelled_per_class`)."""
        return labelled_per_class(root, self.labels_per_class)

    @staticmethod
    def splits(root: Path, transform: Any = None) -> list:
        """The role's ``train/`` and ``val/`` splits, in that order: what `evaluate` embeds."""
        from datasets.image_folder import ImageFolderDataset

        return [ImageFolderDataset(split_dir(root, split), transform=transform) for split in ("train", "val")]

    def image_paths(self, root: Path, trial: Any) -> list[list[Path]]:
        return [split.paths for split in self.splits(root)]

    def evaluate(self, root: Path, features: Any, trial: Any) -> dict[str, float]:
        (train_x, train_y), (val_x, val_y) = (features(split) for split in self.splits(root, features.transform))
        top1 = linear_probe_top1(train_x, train_y, val_x, val_y, seed=int(trial.seed), max_iter=self.max_iter)
        curve = label_efficiency_top1(train_x, train_y, val_x, val_y, parse_per_class(self.labels_per_class),
                                      subset_seed=self.label_subset_seed, seed=int(trial.seed),
                                      max_iter=self.max_iter)
        return {"probe/linear_top1": top1} | {f"probe/linear_top1_at_{n}": v for n, v in curve.items()}
