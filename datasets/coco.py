"""MS-COCO instances in its published layout (../shared/reference/datasets.md, section 6).

::

    coco/train2017/000000397133.jpg ...   coco/annotations/instances_train2017.json

``bbox`` is ``[x, y, width, height]`` in 0-based float pixels. What cannot be used is
skipped and counted (``CocoInstances.skipped``): an annotation whose ``image_id`` names
no image, an unknown ``category_id``, a box that is not four numbers with a positive size,
and an image whose file is missing. A file that is not the instances JSON raises
:class:`DatasetFormatError` naming it.

The dataset-bias study (paper Sec. 4.3, Table 2) pretrains on COCO's scenes and on the
cropped boxes of the same scenes; :func:`coco_image_folder` builds either as an
ImageNet-style folder (what a pretraining method reads) in the cache, once.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datasets.cache import build_once, cache_key, cache_root, file_stamp, using_data_cache
from datasets.crops import CropRequest, write_crops
from datasets.errors import DatasetFormatError
from datasets.subsets import evenly_spaced

VIEWS = ("scenes", "boxes")
VIEW_VERSION = 1


@dataclass(frozen=True)
class CocoBox:
    category: str
    box: tuple[float, float, float, float]  # x, y, width, height
    iscrowd: bool = False


@dataclass(frozen=True)
class CocoImage:
    id: int
    path: Path
    width: int
    height: int
    boxes: list[CocoBox] = field(default_factory=list)


@dataclass(frozen=True)
class CocoInstances:
    images: list[CocoImage]
    categories: dict[int, str]
    skipped: dict[str, int]


def annotation_file(root: Path | str, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{split}.json"


def validate_coco_root(root: Path | str, split: str) -> Path:
    """Fast structural check: the split's image folder and instances file exist."""
    root = Path(root)
    if not (root / split).is_dir():
        raise DatasetFormatError(f"{root / split}: missing the '{split}' image folder of a COCO root")
    if not annotation_file(root, split).is_file():
        raise DatasetFormatError(f"{annotation_file(root, split)}: missing the instances annotation file")
    return root


def read_coco_instances(root: Path | str, split: str = "train2017") -> CocoInstances:
    """The images of `split` (those whose file exists) with their boxes; skips counted."""
    root = validate_coco_root(root, split)
    path = annotation_file(root, split)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise DatasetFormatError(f"{path}: an instances file needs the lists 'images', 'annotations' and 'categories'")
    try:
        categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        images = {int(i["id"]): CocoImage(int(i["id"]), root / split / str(i["file_name"]), int(i["width"]), int(i["height"]), [])
                  for i in data["images"]}
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetFormatError(f"{path}: an image or category entry lacks or mistypes {err}") from None
    skipped: Counter[str] = Counter()
    for ann in data["annotations"]:
        image = images.get(ann.get("image_id")) if isinstance(ann, dict) else None
        if image is None:
            skipped["annotations_without_image"] += 1
            continue
        if ann.get("category_id") not in categories:
            skipped["annotations_unknown_category"] += 1
            continue
        box = ann.get("bbox")
        if (not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box)
                or box[2] <= 0 or box[3] <= 0):
            skipped["bad_boxes"] += 1
            continue
        image.boxes.append(CocoBox(categories[ann["category_id"]], tuple(float(v) for v in box), bool(ann.get("iscrowd", 0))))
    present = [image for image in images.values() if image.path.is_file()]
    if len(present) < len(images):
        skipped["missing_images"] += len(images) - len(present)
    if not present:
        raise DatasetFormatError(f"{root / split}: none of the {len(images)} images of {path.name} exists")
    return CocoInstances(sorted(present, key=lambda i: i.id), categories, dict(skipped))


def coco_image_folder(root: Path | str, split: str, view: str, max_images: int = 0, min_box_side: int = 8,
                      cache: str = "") -> Path:
    """COCO's `split` as an ImageNet-style root (``<folder>/train/<class>/<image>``), built once.

    ``view="scenes"``: every image, whole, in one folder ``train/scene/`` (links to the
    originals). ``view="boxes"``: every non-crowd box with both sides >= `min_box_side`
    cut out (paper Sec. 4.3: "MSCOCO cropped boxes"), in ``train/<category>/``.
    ``max_images`` > 0 keeps that many, evenly spaced (the paper matches the box set's
    size to the scene set's). The folder lives in the cache, keyed by the listing.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    instances = read_coco_instances(root, split)
    if view == "scenes":
        items = [(image.path, None, "scene") for image in instances.images]
    else:
        items = [(image.path, b.box, b.category) for image in instances.images for b in image.boxes
                 if not b.iscrowd and min(b.box[2], b.box[3]) >= min_box_side]
        if not items:
            raise DatasetFormatError(f"{annotation_file(root, split)}: no box of at least {min_box_side} px to crop")
    items = [items[k] for k in evenly_spaced(len(items), max_images)]
    stamp = f"{file_stamp(annotation_file(root, split))}|" + "|".join(f"{p}{b}" for p, b, _ in items)
    digest = hashlib.sha1(stamp.encode()).hexdigest()[:16]
    target = cache_root(cache) / cache_key(f"coco-{view}", VIEW_VERSION, of=digest, split=split)

    def build(tmp: Path) -> None:
        if view == "scenes":
            (tmp / "train" / "scene").mkdir(parents=True)
            for k, (path, _, _) in enumerate(items):
                os.symlink(Path(path).resolve(), tmp / "train" / "scene" / f"{k:07d}{Path(path).suffix.lower()}")
            return
        requests = [CropRequest(Path(p), (b[0], b[1], b[0] + b[2], b[1] + b[3])) for p, b, _ in items]
        with using_data_cache(cache):  # the crops beside the view that links to them
            crops, _ = write_crops(Path(root), f"coco-{split}-boxes", requests, max_side=224)
        for k, (crop, (_, _, category)) in enumerate(zip(crops, items)):
            if crop is not None:  # unreadable images are counted in the crops' manifest
                folder = tmp / "train" / category.replace("/", "_")
                folder.mkdir(parents=True, exist_ok=True)
                os.symlink(crop, folder / f"{k:07d}.png")

    return build_once(target, build)
