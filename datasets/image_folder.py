"""ImageNet-style class folders and lists of image files, with corrupt images skipped.

Layout (torchvision's ImageFolder convention): ``root/<class>/<file>``; classes are
the sorted subfolder names, labelled 0..C-1; files are found recursively and sorted.
Images decode to RGB uint8 CHW tensors with ``torchvision.io.decode_image`` (JPEG, PNG,
WebP) or Pillow (the other extensions, which torchvision cannot decode). A file
that cannot be decoded makes ``__getitem__`` return ``None`` (with a warning naming
it); :func:`collate_skip_corrupt` drops those from the batch and counts them, so one
bad file in a million never stops a run. A file that is not there at all is no corrupt
image but a wrong path (a node that cannot see the driver's disk, a moved root): it
raises FileNotFoundError naming it, so that nothing is scored on a silent subset.
"""
from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image

from datasets.errors import DatasetFormatError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_TORCHVISION_DECODES = {".jpg", ".jpeg", ".png", ".webp"}

Transform = Callable[[torch.Tensor], Any]


def is_image_file(path: Path) -> bool:
    """True for a file with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def class_names(root: Path | str) -> list[str]:
    """The sorted class-folder names of a class-folder root (hidden folders are not classes).

    Cheap (no file listing), so a model can size its classifier before reading the data.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: image folder root does not exist or is not a folder")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_image_folder(root: Path | str) -> tuple[list[tuple[Path, int]], list[str]]:
    """``(samples, classes)`` of a class-folder root: ``[(path, label), ...]`` and class names.

    Hidden folders (``.name``) are not classes. Raises :class:`DatasetFormatError` when
    the root is missing, has no class folders, or holds no images.
    """
    root = Path(root)
    classes = class_names(root)
    if not classes:
        raise DatasetFormatError(f"{root}: no class folders in it (expected {root}/<class>/<image>)")
    samples = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and is_image_file(p))
        samples += [(path, label) for path in files]
    if not samples:
        raise DatasetFormatError(
            f"{root}: no images in its {len(classes)} class folders (extensions {' '.join(IMAGE_EXTENSIONS)})"
        )
    return samples, classes


def validate_image_folder_root(root: Path | str) -> Path:
    """Fast structural check of a class-folder root, for use before any cluster work.

    Unlike :func:`scan_image_folder` it stops at the first image, so it costs
    milliseconds on ImageNet. Raises :class:`DatasetFormatError` like the scan does.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: image folder root does not exist or is not a folder")
    classes = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not classes:
        raise DatasetFormatError(f"{root}: no class folders in it (expected {root}/<class>/<image>)")
    for folder in sorted(classes):
        if any(p.is_file() and is_image_file(p) for p in folder.rglob("*")):
            return root
    raise DatasetFormatError(
        f"{root}: no images in its {len(classes)} class folders (extensions {' '.join(IMAGE_EXTENSIONS)})"
    )


def load_rgb(path: Path) -> torch.Tensor | None:
    """The image at ``path`` as an RGB uint8 (3, H, W) tensor, or ``None`` if it cannot be decoded.

    Raises FileNotFoundError (naming ``path``) when there is no file: see the module docstring.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in _TORCHVISION_DECODES:
            return decode_image(str(path), mode=ImageReadMode.RGB)
        with Image.open(path) as image:
            return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
    except FileNotFoundError:
        raise
    except (RuntimeError, ValueError, OSError) as error:  # PIL's UnidentifiedImageError is an OSError
        if not path.exists():  # torchvision reports a missing file as a RuntimeError
            raise FileNotFoundError(errno.ENOENT, "input image not found", str(path)) from error
        log.warning("skipping unreadable image %s: %s", path, error)
        return None


class ImagePathDataset(Dataset):
    """Images from a list of paths, each with a label.

    ``labels`` default to the item index, so after :func:`collate_skip_corrupt` a
    consumer can tell which items survived. Items are ``(transform(image), label)``,
    or ``None`` for an unreadable file.
    """

    def __init__(self, paths: Sequence[Path | str], labels: Sequence[int] | None = None, transform: Transform | None = None):
        self.paths = [Path(p) for p in paths]
        self.labels = list(range(len(self.paths))) if labels is None else [int(label) for label in labels]
        if len(self.labels) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int] | None:
        image = load_rgb(self.paths[index])
        if image is None:
            return None
        return (self.transform(image) if self.transform else image), self.labels[index]


class ImageFolderDataset(ImagePathDataset):
    """A class-folder root (see :func:`scan_image_folder`) as ``(image, class index)`` items."""

    def __init__(self, root: Path | str, transform: Transform | None = None):
        samples, classes = scan_image_folder(root)
        super().__init__([path for path, _ in samples], [label for _, label in samples], transform)
        self.root = Path(root)
        self.classes = classes
        self.class_to_idx = {name: index for index, name in enumerate(classes)}


def collate_skip_corrupt(batch: Sequence[tuple[Any, int] | None]) -> tuple[Any, torch.Tensor, int]:
    """Stack the readable items of a batch: ``(images, labels, n_skipped)``.

    ``images`` is a stacked tensor, or a tuple of stacked tensors when the transform
    returns several views (a tuple or list) per image. If every item was unreadable,
    ``images`` and ``labels`` are empty tensors.
    """
    good = [item for item in batch if item is not None]
    skipped = len(batch) - len(good)
    labels = torch.as_tensor([label for _, label in good], dtype=torch.int64)
    if not good:
        return torch.empty(0, dtype=torch.uint8), labels, skipped
    first = good[0][0]
    if isinstance(first, (tuple, list)):
        images = tuple(torch.stack(views) for views in zip(*(image for image, _ in good)))
    else:
        images = torch.stack([image for image, _ in good])
    return images, labels, skipped


class ReplaceCorrupt(Dataset):
    """A dataset whose unreadable items are replaced by the next readable one, and counted.

    Training wants full batches (every DDP rank takes the same steps, and the MoCo queue
    takes whole global batches), so an unreadable image is not dropped from its batch:
    item ``i`` becomes the first readable item of ``i+1, i+2, ...`` (wrapping around),
    deterministically. Items are ``(*item, skipped)``, where ``skipped`` is how many
    unreadable files were stepped over for this item; a DataLoader's default collate sums
    nothing, so the training loop adds them up (``data/skipped_images``).
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        n = len(self.dataset)
        for skipped in range(n):
            item = self.dataset[(index + skipped) % n]
            if item is not None:
                return (*item, skipped)
        root = getattr(self.dataset, "root", "the dataset")
        raise DatasetFormatError(f"{root}: none of its {n} images could be decoded")
