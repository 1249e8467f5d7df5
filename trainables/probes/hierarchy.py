"""The hierarchy probe: the linear probe at every level of a label hierarchy, coarse to fine
(Cole et al. 2022, Sec. 4.4, Fig. 6: iNat21's kingdom to species).

Reads an iNat21-layout root (datasets.inat21: ``train.json``, ``val.json`` and the images
they name), extracts frozen features once per split, and for every rank in ``ranks`` fits
the linear probe (`linear_probe_top1`) with that rank's labels:
``probe/hierarchy_<rank>_top1``. ``probe/hierarchy_drop`` is the first (coarsest) rank's
top-1 minus the last (finest) rank's: how much the representation loses as the task gets
finer. Cole et al.'s claim, that the supervised minus self-supervised gap grows from coarse
to fine, is that a self-supervised run's drop exceeds a supervised run's (the difference of
differences, sweeps/task_granularity.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datasets.registry import ReportColumn
from datasets.sources.base import IMAGE_FOLDER, DataRole
from trainables.probes.base import PROBES, Probe

DROP = "probe/hierarchy_drop"


def rank_metric(rank: str) -> str:
    return f"probe/hierarchy_{rank}_top1"


def parse_ranks(text: str) -> list[str]:
    """``"kingdom,genus,species"`` -> the ranks, which must be iNat21 ranks, coarse to fine."""
    from datasets.inat21 import RANKS

    ranks = [part.strip() for part in str(text).split(",") if part.strip()]
    unknown = [rank for rank in ranks if rank not in RANKS]
    if unknown:
        raise ValueError(f"ranks={text!r}: {', '.join(unknown)} not among {', '.join(RANKS)}")
    if len(ranks) < 2 or [RANKS.index(r) for r in ranks] != sorted({RANKS.index(r) for r in ranks}):
        raise ValueError(f"ranks={text!r} must be at least two distinct ranks, coarse to fine ({', '.join(RANKS)})")
    return ranks


def rank_codes(splits: list[Any], rank: str) -> list[np.ndarray]:
    """Per split, each category's integer label at `rank`, one numbering across the splits
    (a rank label is its taxon path, so the splits' own category ids need not agree)."""
    labels = [split.rank_labels(rank) for split in splits]
    index = {label: i for i, label in enumerate(sorted({label for split in labels for label in split}))}
    return [np.asarray([index[label] for label in split], np.int64) for split in labels]


def hierarchy_top1(train_x: np.ndarray, train_category: np.ndarray, val_x: np.ndarray, val_category: np.ndarray,
                   train: Any, val: Any, ranks: list[str], seed: int = 0, max_iter: int = 1000) -> dict[str, float]:
    """The linear probe's top-1 at each rank (features with their category indices into
    `train`'s and `val`'s categories), and the coarsest-minus-finest drop."""
    from trainables.probes.linear import linear_probe_top1

    metrics = {}
    for rank in ranks:
        train_codes, val_codes = rank_codes([train, val], rank)
        train_y = train_codes[np.asarray(train_category)]
        if len(np.unique(train_y)) < 2:
            raise ValueError(f"rank {rank}: the training images hold one {rank} only; the probe needs two")
        metrics[rank_metric(rank)] = linear_probe_top1(train_x, train_y, val_x, val_codes[np.asarray(val_category)],
                                                       seed=seed, max_iter=max_iter)
    metrics[DROP] = metrics[rank_metric(ranks[0])] - metrics[rank_metric(ranks[-1])]
    return metrics


def first_per_category(category_index: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the first `limit` images of each category (all when `limit` is 0)."""
    if limit <= 0:
        return np.arange(len(category_index))
    seen: dict[int, int] = {}
    keep = []
    for i, category in enumerate(category_index.tolist()):
        seen[category] = seen.get(category, 0) + 1
        if seen[category] <= limit:
            keep.append(i)
    return np.asarray(keep, np.int64)


@PROBES.register
@dataclass(frozen=True)
class HierarchyProbe(Probe):
    """``probe/hierarchy_<rank>_top1`` for each rank and ``probe/hierarchy_drop``: fit on
    ``train.json``'s images, scored on ``val.json``'s."""

    name: ClassVar[str] = "hierarchy"
    columns: ClassVar[tuple[ReportColumn, ...]] = (
        ReportColumn((DROP,), "top-1 drop, coarsest to finest rank", "drop", percent=False),)
    roles: ClassVar[dict[str, DataRole]] = {"hierarchy": DataRole(IMAGE_FOLDER, "synthetic-hierarchy", ("train", "val"))}
    ranks: str = "kingdom,genus,species"  # the synthetic set's three levels; iNat21 has all seven
    train_split: str = "train"  # iNat21 also has train_mini
    max_train_per_category: int = 0  # 0: every training image
    max_iter: int = 1000

    def problems(self, trial: Any) -> list[str]:
        out = []
        try:
            parse_ranks(self.ranks)
        except ValueError as err:
            out.append(str(err))
        if self.max_train_per_category < 0:
            out.append(f"max_train_per_category={self.max_train_per_category} must be 0 (all) or more")
        if self.max_iter < 1:
            out.append(f"max_iter={self.max_iter} must be at least 1")
        return out

    def read(self, root: Path, trial: Any) -> tuple[Any, Any]:
        from datasets.inat21 import read_inat21_split

        return read_inat21_split(root, self.train_split), read_inat21_split(root, "val")

    def evaluate(self, root: Path, features: Any, trial: Any) -> dict[str, float]:
        from datasets.image_folder import ImagePathDataset

        train, val = self.read(root, trial)
        keep = first_per_category(train.category_index, self.max_train_per_category)
        train_x, train_category = features(ImagePathDataset([train.paths[i] for i in keep], train.category_index[keep],
                                                            transform=features.transform))
        val_x, val_category = features(ImagePathDataset(val.paths, val.category_index, transform=features.transform))
        return hierarchy_top1(train_x, train_category, val_x, val_category, train, val, parse_ranks(self.ranks),
                              seed=int(trial.seed), max_iter=self.max_iter)
