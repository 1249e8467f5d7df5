"""ADE20K SceneParsing (``ADEChallengeData2016``) in its published layout
(../shared/reference/datasets.md, section 7).

::

    ADEChallengeData2016/images/{training,validation}/ADE_train_00000001.jpg
    ADEChallengeData2016/annotations/{training,validation}/ADE_train_00000001.png
    ADEChallengeData2016/objectInfo150.txt

Masks are single-channel uint8 class indices, 0 = "other objects" (ignored in scoring),
1..150 the classes of ``objectInfo150.txt``, the same size as their image. An image
without a mask, or whose mask differs in size, is skipped and counted
(``AdeSplit.skipped``; the probe reports the count); a mask that is not single-channel
raises :class:`DatasetFormatError` naming it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from datasets.errors import DatasetFormatError

SPLITS = ("training", "validation")
IGNORE = 0  # "other objects": not scored
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class AdeSplit:
    images: list[Path]
    masks: list[Path]
    class_names: list[str]  # index k - 1 names class k
    skipped: dict[str, int]


def ade_dir(root: Path | str) -> Path:
    """The ``ADEChallengeData2016`` folder: `root` itself or its child of that name."""
    root = Path(root)
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    raise DatasetFormatError(f"{root}: not an ADE20K SceneParsing root (no images/ and annotations/ in it "
                             "or in its ADEChallengeData2016/)")


def read_object_info(path: Path) -> list[str]:
    """Class names of ``objectInfo150.txt`` (tab-separated ``Idx Ratio Train Val Name``;
    the first synonym, stripped), in index order."""
    names: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split("\t")
        if number == 1 and fields[0].strip().lower() == "idx":
            continue
        if not line.strip():
            continue
        try:
            names[int(fields[0])] = fields[4].split(",")[0].strip()
        except (ValueError, IndexError):
            raise DatasetFormatError(f"{path}, line {number}: expected 'Idx<TAB>Ratio<TAB>Train<TAB>Val<TAB>Name', "
                                     f"got {line!r}") from None
    if sorted(names) != list(range(1, len(names) + 1)):
        raise DatasetFormatError(f"{path}: class indices must run 1..{len(names)}")
    return [names[k] for k in sorted(names)]


def validate_ade_root(root: Path | str, splits: tuple[str, ...] = ()) -> Path:
    ade = ade_dir(root)
    for split in splits:
        for kind in ("images", "annotations"):
            if not (ade / kind / split).is_dir():
                raise DatasetFormatError(f"{ade / kind / split}: missing the '{split}' {kind} folder")
    return ade


def read_ade20k(root: Path | str, split: str = "training") -> AdeSplit:
    """The `split`'s (image, mask) pairs, sorted by name; unusable pairs skipped and counted."""
    ade = validate_ade_root(root, (split,))
    info = ade / "objectInfo150.txt"
    class_names = read_object_info(info) if info.is_file() else []
    images, masks, skipped = [], [], Counter()
    for image in sorted(p for p in (ade / "images" / split).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
        mask = ade / "annotations" / split / f"{image.stem}.png"
        if not mask.is_file():
            skipped["images_without_mask"] += 1
            continue
        try:
            with Image.open(image) as im, Image.open(mask) as m:
                image_size, mask_size, mode = im.size, m.size, m.mode
        except (UnidentifiedImageError, OSError):
            skipped["unreadable_pairs"] += 1
            continue
        if mode not in ("L", "P"):
            raise DatasetFormatError(f"{mask}: a class-index mask must be single-channel (L or P), got mode {mode}")
        if image_size != mask_size:
            skipped["masks_wrong_size"] += 1
            continue
        images.append(image)
        masks.append(mask)
    if not images:
        raise DatasetFormatError(f"{ade / 'images' / split}: no image with a usable mask ({dict(skipped) or 'empty'})")
    return AdeSplit(images, masks, class_names, dict(skipped))


def load_mask(path: Path | str) -> np.ndarray:
    """A class-index mask as an H x W uint8 array."""
    with Image.open(path) as mask:
        if mask.mode not in ("L", "P"):
            raise DatasetFormatError(f"{path}: a class-index mask must be single-channel (L or P), got mode {mask.mode}")
        return np.array(mask, dtype=np.uint8)
