"""Pascal VOC 2007 in its published layout (../shared/reference/datasets.md, section 5).

::

    VOCdevkit/VOC2007/JPEGImages/000005.jpg   Annotations/000005.xml
      ImageSets/Main/{train,val,trainval,test}.txt   ImageSets/Main/<class>_<split>.txt

Class files hold ``<id> <label>`` lines, label 1 (present), -1 (absent) or 0 (only
difficult instances). Annotation boxes are integer, 1-based and inclusive. The root may
be the ``VOC2007`` folder itself, ``VOCdevkit`` or the folder holding ``VOCdevkit``.
Malformed files raise :class:`DatasetFormatError` naming the file and what is wrong.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.errors import DatasetFormatError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
SPLITS = ("train", "val", "trainval", "test")


@dataclass(frozen=True)
class VocObject:
    """One annotated object: class name and box ``(xmin, ymin, xmax, ymax)`` as in the XML
    (1-based, inclusive)."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool = False
    truncated: bool = False

    def pixel_edges(self) -> tuple[float, float, float, float]:
        """The box as 0-based pixel edges (left, top, right, bottom), right/bottom exclusive."""
        xmin, ymin, xmax, ymax = self.box
        return xmin - 1, ymin - 1, xmax, ymax


@dataclass(frozen=True)
class VocAnnotation:
    filename: str
    width: int
    height: int
    objects: tuple[VocObject, ...]


@dataclass(frozen=True)
class VocSplit:
    """One split's images with the image-level labels of the class files (N x C, {1, -1, 0})."""

    root: Path  # the VOC2007 folder
    split: str
    ids: list[str]
    classes: list[str]
    labels: np.ndarray

    @property
    def paths(self) -> list[Path]:
        return [self.root / "JPEGImages" / f"{image_id}.jpg" for image_id in self.ids]

    def annotation_path(self, image_id: str) -> Path:
        return self.root / "Annotations" / f"{image_id}.xml"


def voc_dir(root: Path | str) -> Path:
    """The ``VOC2007`` folder under `root` (`root` itself, ``VOC2007/`` or ``VOCdevkit/VOC2007/``)."""
    root = Path(root)
    for candidate in (root, root / "VOC2007", root / "VOCdevkit" / "VOC2007"):
        if (candidate / "ImageSets" / "Main").is_dir() and (candidate / "Annotations").is_dir():
            return candidate
    raise DatasetFormatError(f"{root}: not a Pascal VOC 2007 root (no ImageSets/Main/ and Annotations/ in it, "
                             "its VOC2007/ or its VOCdevkit/VOC2007/)")


def split_classes(voc: Path, split: str) -> list[str]:
    """Classes with a ``<class>_<split>.txt`` file: VOC's 20 in their order when all are there,
    else the names found, sorted (a dataset in VOC's layout with other classes)."""
    main = voc / "ImageSets" / "Main"
    found = sorted(p.name[: -len(f"_{split}.txt")] for p in main.glob(f"*_{split}.txt"))
    if not found:
        raise DatasetFormatError(f"{main}: no <class>_{split}.txt files")
    return list(VOC_CLASSES) if set(VOC_CLASSES) <= set(found) else found


def read_class_file(path: Path) -> dict[str, int]:
    """``<id> <label>`` lines of one class file as id -> label."""
    if not path.is_file():
        raise DatasetFormatError(f"{path}: missing class file")
    out: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("1", "-1", "0"):
            raise DatasetFormatError(f"{path}, line {number}: expected '<id> <1|-1|0>', got {line!r}")
        out[fields[0]] = int(fields[1])
    return out


def read_voc_split(root: Path | str, split: str) -> VocSplit:
    """The images of `split` with their N x C labels from ``ImageSets/Main/<class>_<split>.txt``."""
    voc = voc_dir(root)
    listing = voc / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetFormatError(f"{listing}: missing the list of the '{split}' split")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetFormatError(f"{listing}: the '{split}' split lists no image")
    classes = split_classes(voc, split)
    labels = np.empty((len(ids), len(classes)), np.int8)
    for c, name in enumerate(classes):
        path = voc / "ImageSets" / "Main" / f"{name}_{split}.txt"
        per_image = read_class_file(path)
        missing = [i for i in ids if i not in per_image]
        if missing:
            raise DatasetFormatError(f"{path}: no label for {len(missing)} image(s) of {listing.name}, e.g. {missing[0]}")
        labels[:, c] = [per_image[i] for i in ids]
    return VocSplit(voc, split, ids, classes, labels)


def _text(node: ElementTree.Element, path: str, file: Path, what: str) -> str:
    found = node.find(path)
    if found is None or found.text is None or not found.text.strip():
        raise DatasetFormatError(f"{file}: {what} has no <{path}>")
    return found.text.strip()


def _number(node: ElementTree.Element, path: str, file: Path, what: str) -> float:
    text = _text(node, path, file, what)
    try:
        return float(text)
    except ValueError:
        raise DatasetFormatError(f"{file}: {what} <{path}> is not a number: {text!r}") from None


def parse_annotation(path: Path | str) -> VocAnnotation:
    """One ``Annotations/<id>.xml``; a missing or malformed field raises naming the file."""
    path = Path(path)
    try:
        tree = ElementTree.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetFormatError(f"{path}: missing annotation file") from None
    except ElementTree.ParseError as err:
        raise DatasetFormatError(f"{path}: not well-formed XML ({err})") from None
    width = int(_number(tree, "size/width", path, "the annotation"))
    height = int(_number(tree, "size/height", path, "the annotation"))
    objects = []
    for k, node in enumerate(tree.findall("object"), start=1):
        what = f"object {k}"
        name = _text(node, "name", path, what)
        box = tuple(_number(node, f"bndbox/{edge}", path, f"object {k} ({name})")
                    for edge in ("xmin", "ymin", "xmax", "ymax"))
        if box[2] < box[0] or box[3] < box[1]:
            raise DatasetFormatError(f"{path}: object {k} ({name}) has an empty box {box}")
        flags = {flag: (node.findtext(flag) or "0").strip() == "1" for flag in ("difficult", "truncated")}
        objects.append(VocObject(name, box, **flags))
    filename = (tree.findtext("filename") or f"{path.stem}.jpg").strip()
    return VocAnnotation(filename, width, height, tuple(objects))


def validate_voc_root(root: Path | str, splits: tuple[str, ...] = ()) -> Path:
    """Fast structural check (no annotation parsed): the folders and the splits' lists exist."""
    voc = voc_dir(root)
    if not (voc / "JPEGImages").is_dir():
        raise DatasetFormatError(f"{voc}: missing JPEGImages/")
    for split in splits:
        if not (voc / "ImageSets" / "Main" / f"{split}.txt").is_file():
            raise DatasetFormatError(f"{voc / 'ImageSets' / 'Main' / f'{split}.txt'}: missing the '{split}' split's list")
        split_classes(voc, split)
    return voc
