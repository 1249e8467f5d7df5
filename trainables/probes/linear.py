"""The linear probe: top-1 of a softmax classifier on frozen features (paper Sec. 5)."""
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

from datasets.sources.base import IMAGE_FOLDER, DataRole, split_dir
from datasets.registry import ReportColumn
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


@PROBES.register
@dataclass(frozen=True)
class LinearProbe(Probe):
    """``probe/linear_top1``: fit on the role's ``train/`` split, scored on ``val/``."""

    name: ClassVar[str] = "linear"
    columns: ClassVar[tuple[ReportColumn, ...]] = (ReportColumn(("probe/linear_top1",), "linear top-1", "linear"),)
    roles: ClassVar[dict[str, DataRole]] = {"probe": DataRole(IMAGE_FOLDER, "synthetic-objects", ("train", "val"))}
    max_iter: int = 1000

    def problems(self, trial: Any) -> list[str]:
        return [] if self.max_iter >= 1 else [f"max_iter={self.max_iter} must be at least 1"]

    def evaluate(self, root: Path, features: Any, trial: Any) -> dict[str, float]:
        from datasets.image_folder import ImageFolderDataset

        train_x, train_y = features(ImageFolderDataset(split_dir(root, "train"), transform=features.transform))
        val_x, val_y = features(ImageFolderDataset(split_dir(root, "val"), transform=features.transform))
        top1 = linear_probe_top1(train_x, train_y, val_x, val_y, seed=int(trial.seed), max_iter=self.max_iter)
        return {"probe/linear_top1": top1}
