"""Boxes cut out of annotated images, written once into the cache so the evaluation reads them by path.

The paper builds the occlusion (GOT-10k) and the instance / instance+viewpoint
(PASCAL3D+) invariance sets from boxes: "We crop each bounding box to create a separate
image" (Sec. 3.2). The evaluation reads images by path (``InvarianceSet.paths``), so each
crop is written once as a PNG into a cache folder and reused.

Where: next to a generated root (a folder built by :func:`datasets.cache.build_once`,
which lives in the trial's ``data_cache``, or one of its subfolders), else in :func:`datasets.cache.cache_root`:
the trial's ``data_cache`` while its evaluation data is read (:func:`datasets.cache.using_data_cache`;
on a cluster that is shared storage, so every node reads the same crops), else
``$DSSL_CACHE_DIR`` or ``~/.cache/demystify-ssl``. A read-only real root is never
written to. The folder's name is a hash of everything that decides the crops: each
image's path, size and modification time, its box, and the size cap; a changed image or
annotation gives a new folder instead of stale crops. ``crops.json`` in the folder
records which requests could not be cut (undecodable image, box outside the image), so a
reused folder reports the same skip counts as the build that wrote it. A missing image is
no such request: it raises FileNotFoundError naming it (a wrong path is an error, never
a silently smaller set).
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from datasets.cache import build_once, cache_key, cache_root, file_stamp, is_complete

# Bump when the crops written for the same requests change.
CROPS_VERSION = 1
MANIFEST = "crops.json"


@dataclass(frozen=True)
class CropRequest:
    """Cut ``box`` out of ``image``: pixel edges ``(left, top, right, bottom)``, 0-based,
    right and bottom exclusive (a 1-pixel box at the origin is ``(0, 0, 1, 1)``)."""

    image: Path
    box: tuple[float, float, float, float]


def crop_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """``box`` rounded outwards to whole pixels and clipped to a ``width`` x ``height``
    image; None when nothing of it is inside the image (or it is empty)."""
    left, top = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    right, bottom = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def _fingerprint(requests: list[CropRequest], max_side: int) -> str:
    digest = hashlib.sha1(f"{CROPS_VERSION}:{max_side}".encode())
    for request in requests:
        digest.update(f"|{request.image}|{file_stamp(request.image)}|{','.join(f'{v:.3f}' for v in request.box)}".encode())
    return digest.hexdigest()[:20]


def _cut(request: CropRequest, target: Path, max_side: int) -> str | None:
    """Write one crop to ``target``; return the reason it could not be cut, or None."""
    try:
        with Image.open(request.image) as image:
            box = crop_box(request.box, *image.size)
            if box is None:
                return "boxes_outside_image"
            crop = image.convert("RGB").crop(box)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, ValueError):
        return "unreadable_images"
    if max(crop.size) > max_side:
        # Shrink only: the evaluation resizes anyway, and full-resolution crops of
        # 1920 x 1080 video frames would cost disk for nothing.
        scale = max_side / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                           Image.Resampling.BILINEAR)
    crop.save(target, compress_level=1)
    return None


def crop_cache_folder(root: Path, name: str, requests: list[CropRequest], max_side: int) -> Path:
    """The folder that holds (or will hold) the crops of ``requests`` read from ``root``."""
    root = Path(root).resolve()
    # Next to the generated folder holding `root` (a layout's subfolder, e.g. <scenes>/VOC2007).
    base = next((folder.parent for folder in (root, *root.parents) if is_complete(folder)), cache_root())
    return base / cache_key(f"{name}-crops", CROPS_VERSION, of=_fingerprint(requests, max_side))


def write_crops(root: Path, name: str, requests: list[CropRequest], max_side: int = 224
                ) -> tuple[list[Path | None], dict[str, int]]:
    """The crop file of each request (None where it could not be cut) and the skip counts.

    Built once per distinct set of requests (see the module docstring); ``name`` names
    the cache folder (e.g. ``got10k-occlusion``). ``max_side`` caps the longer side.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    folder = crop_cache_folder(root, name, requests, max_side)

    def build(tmp: Path) -> None:
        reasons = [_cut(request, tmp / f"{k:06d}.png", max_side) for k, request in enumerate(requests)]
        (tmp / MANIFEST).write_text(json.dumps({"skipped": reasons}))

    build_once(folder, build)
    reasons = json.loads((folder / MANIFEST).read_text())["skipped"]
    paths = [None if reason else folder / f"{k:06d}.png" for k, reason in enumerate(reasons)]
    return paths, dict(Counter(reason for reason in reasons if reason))
