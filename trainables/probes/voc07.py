"""The Pascal VOC 2007 SVM probes (paper Table 2): whole images and cropped boxes.

``protocol`` names the SVM protocol both use (``trainables.probes.svm.PROTOCOLS``):
``goyal2019`` (the default: Goyal et al. 2019's benchmark, which the paper follows; whole
images resized, layer4 on a 2 x 2 grid when the trial scores ``pool``, L2-normalised rows,
class weights {1: 2, -1: 1}, 26 costs, area AP) or ``fast`` (the shared centre-crop
features, standardised, balanced weights, 4 costs, 11-point AP; the demo preset's).

``voc07`` (``probe/voc07_map``): frozen features of every ``trainval`` and ``test`` image,
one linear SVM per class with its labels from ``ImageSets/Main/<class>_<split>.txt``
(``trainables.probes.svm``), AP on ``test`` (difficult-only images ignored), mean over
classes. With
``pair=A,B`` it also reports the paper's co-occurrence check (Table 2's footnote: test
images showing a table or a chair but not both) as ``probe/voc07_pair_map``: the mAP of
the A and B SVMs on the test images where exactly one of the two is present (and the
other absent, not difficult), so context shared by the pair cannot help.

``voc07_boxes`` (``probe/voc07_boxes_map``): every annotated box cut out to its own image
with its one class (difficult boxes left out unless ``include_difficult``), the same SVM
protocol on the crops of ``trainval`` and ``test`` (paper Sec. 4.3: "Pascal cropped
boxes"). The crops are written once into the cache (``datasets.crops``).

Both read the data role ``voc`` (``data.voc=voc2007``, ``data.voc.root=/data/VOCdevkit``;
by default the synthetic scenes) and take features through the trial's one extraction
path, in one call per probe (trainval and test together).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datasets.sources.base import VOC2007, DataRole
from datasets.registry import ReportColumn
from trainables.probes.base import PROBES, Probe
from trainables.probes.svm import PROTOCOLS, mean_ap, parse_costs, svm_problems, svm_scores

VOC_ROLE = {"voc": DataRole(VOC2007, "synthetic-voc", ("trainval", "test"))}


@dataclass(frozen=True)
class SvmProbe(Probe):
    """Settings of the SVM protocol shared by the VOC probes."""

    roles: ClassVar[dict[str, DataRole]] = VOC_ROLE
    protocol: str = "goyal2019"  # trainables.probes.svm.PROTOCOLS: goyal2019 (the paper's) or fast
    costs: str = ""  # the SVM cost grid, chosen per class by cross-validation on AP ("": the protocol's)
    cv_folds: int = 3
    max_iter: int = 2000
    # Processes fitting the classes at once. 1 by default: a trial's driver reserves no CPU of
    # its own (orchestrator.sweep), so more would take cores given to Train workers.
    n_jobs: int = 1

    def problems(self, trial: Any) -> list[str]:
        return svm_problems(self.costs, self.cv_folds, self.max_iter, self.n_jobs, self.protocol)

    def view(self, features: Any, trial: Any) -> Any:
        """The protocol's feature path: ``goyal2019`` sees whole images, and layer4 on a 2 x 2
        grid where the trial scores the pooled output; ``fast`` the trial's shared view. A
        stand-in path without views (tests) is used as it is."""
        spec = PROTOCOLS[self.protocol]
        layer = "layer4_2x2" if spec.pooled_layer4 and trial.eval_layer == "pool" else trial.eval_layer
        return features.view(spec.whole_image, layer) if hasattr(features, "view") else features

    def scores(self, train_x, train_labels, test_x, trial: Any) -> np.ndarray:
        return svm_scores(train_x, train_labels, test_x, parse_costs(self.costs, self.protocol), self.cv_folds,
                          int(trial.seed), self.max_iter, self.n_jobs, self.protocol)

    def scored_map(self, scores: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        return mean_ap(scores, labels, PROTOCOLS[self.protocol].eleven_point)


def split_features(features: Any, train_paths: list[Path], test_paths: list[Path]):
    """Features of both splits from one extraction call, with the positions that decoded."""
    x, index = features(list(train_paths) + list(test_paths))
    train = index < len(train_paths)
    return x[train], index[train], x[~train], index[~train] - len(train_paths)


@PROBES.register
@dataclass(frozen=True)
class Voc07Probe(SvmProbe):
    """``probe/voc07_map`` (and ``probe/voc07_pair_map`` with ``pair``)."""

    name: ClassVar[str] = "voc07"
    columns: ClassVar[tuple[ReportColumn, ...]] = (
        ReportColumn(("probe/voc07_map",), "VOC07 mAP", "voc07"),
        ReportColumn(("probe/voc07_pair_map",), "A xor B mAP (co-occurring pair)", "xor"))
    pair: str = ""  # "A,B": also the co-occurrence check on test images with A or B but not both

    def problems(self, trial: Any) -> list[str]:
        out = super().problems(trial)
        names = [n.strip() for n in self.pair.split(",")] if self.pair else []
        if names and (len(names) != 2 or names[0] == names[1] or not all(names)):
            out.append(f"pair={self.pair!r} must name two different classes, e.g. chair,diningtable")
        return out

    def read(self, root: Path, trial: Any):
        """Both splits' class files (and `pair`'s classes among them)."""
        from datasets.errors import DatasetFormatError
        from datasets.voc import read_voc_split

        train, test = read_voc_split(root, "trainval"), read_voc_split(root, "test")
        if train.classes != test.classes:
            raise DatasetFormatError(f"{root}: trainval and test have different class files")
        if self.pair and not all(n.strip() in train.classes for n in self.pair.split(",")):
            raise DatasetFormatError(f"{root}: pair={self.pair!r} names a class without class files "
                                     f"(classes: {', '.join(train.classes)})")
        return train, test

    def evaluate(self, root: Path, features: Any, trial: Any) -> dict[str, float]:
        train, test = self.read(root, trial)
        train_x, train_i, test_x, test_i = split_features(self.view(features, trial), train.paths, test.paths)
        scores = self.scores(train_x, train.labels[train_i], test_x, trial)
        labels = test.labels[test_i]
        value, aps = self.scored_map(scores, labels)
        metrics = {"probe/voc07_map": value, "data/voc07_classes_scored": int(np.sum(~np.isnan(aps)))}
        if self.pair:
            a, b = (train.classes.index(n.strip()) for n in self.pair.split(","))
            one = ((labels[:, a] == 1) & (labels[:, b] == -1)) | ((labels[:, a] == -1) & (labels[:, b] == 1))
            metrics["probe/voc07_pair_map"] = self.scored_map(scores[one][:, [a, b]], labels[one][:, [a, b]])[0]
            metrics["data/voc07_pair_images"] = int(one.sum())
        return metrics


@PROBES.register
@dataclass(frozen=True)
class Voc07BoxesProbe(SvmProbe):
    """``probe/voc07_boxes_map``: the SVM protocol on every annotated box, cut out."""

    name: ClassVar[str] = "voc07_boxes"
    columns: ClassVar[tuple[ReportColumn, ...]] = (ReportColumn(("probe/voc07_boxes_map",), "cropped boxes mAP", "boxes"),)
    include_difficult: bool = False
    crop_max_side: int = 224

    def problems(self, trial: Any) -> list[str]:
        out = super().problems(trial)
        return out + ([] if self.crop_max_side >= 8 else [f"crop_max_side={self.crop_max_side} must be at least 8"])

    def read(self, root: Path, trial: Any) -> dict[str, tuple]:
        """Every box of both splits, all their annotation files parsed (`box_requests`)."""
        return {split: self.box_requests(root, split) for split in ("trainval", "test")}

    def box_requests(self, root: Path, split: str) -> tuple[Any, list, list[int], Counter]:
        """The split, the boxes to cut from its images, their classes, and what was left
        out, counted; every annotation file of the split is parsed."""
        from datasets.crops import CropRequest
        from datasets.voc import parse_annotation, read_voc_split

        data = read_voc_split(root, split)
        requests, classes, skipped = [], [], Counter()
        for image_id, image in zip(data.ids, data.paths):
            for obj in parse_annotation(data.annotation_path(image_id)).objects:
                if obj.difficult and not self.include_difficult:
                    skipped["difficult_boxes"] += 1
                elif obj.name not in data.classes:
                    skipped["boxes_of_other_classes"] += 1
                else:
                    requests.append(CropRequest(image, obj.pixel_edges()))
                    classes.append(data.classes.index(obj.name))
        return data, requests, classes, skipped

    def boxes(self, root: Path, split: str, requested: tuple | None = None) -> tuple[list[Path], np.ndarray, Counter]:
        """The split's box crops and their N x C labels in {1, -1}; what was left out,
        counted. `requested`: the split's `box_requests`, where they were read already."""
        from datasets.crops import write_crops

        data, requests, classes, skipped = requested or self.box_requests(root, split)
        crops, failed = write_crops(data.root, f"voc07-{split}-boxes", requests, self.crop_max_side)
        skipped = Counter(skipped)
        skipped.update(failed)
        kept = [k for k, crop in enumerate(crops) if crop is not None]
        labels = -np.ones((len(kept), len(data.classes)), np.int8)
        labels[np.arange(len(kept)), np.asarray(classes, np.int64)[kept]] = 1
        return [crops[k] for k in kept], labels, skipped

    def evaluate(self, root: Path, features: Any, trial: Any) -> dict[str, float]:
        splits = self.read(root, trial)
        train_paths, train_labels, skipped = self.boxes(root, "trainval", splits["trainval"])
        test_paths, test_labels, test_skipped = self.boxes(root, "test", splits["test"])
        skipped.update(test_skipped)
        train_x, train_i, test_x, test_i = split_features(self.view(features, trial), train_paths, test_paths)
        scores = self.scores(train_x, train_labels[train_i], test_x, trial)
        value, _ = self.scored_map(scores, test_labels[test_i])
        # Boxes left out by the protocol (difficult, other classes) apart from boxes that
        # could not be cut: only the latter are input lost, which the sweep warns about.
        by_design = skipped["difficult_boxes"] + skipped["boxes_of_other_classes"]
        return {"probe/voc07_boxes_map": value, "data/voc07_boxes": len(train_i) + len(test_i),
                "data/voc07_boxes_left_out": int(by_design),
                "data/voc07_boxes_skipped": int(sum(skipped.values()) - by_design)}
