"""Reader for the Amsterdam Library of Object Images (ALOI) in its real on-disk layout.

The paper measures viewpoint, illumination-direction and illumination-colour
invariance on ALOI, which "directly provides 1000 local trajectories for each of the
annotated properties" (Section 3.2): every object's images under one factor form one
trajectory. Layout (one folder per resolution, as the tars unpack)::

    png4/<obj>/<obj>_<cond>.png      e.g. png4/1/1_r355.png, png4/651/651_l3c2.png

``<cond>`` is ``r<angle>`` (viewpoint), ``l<L>c<C>`` (illumination direction L seen by
camera C), ``i<T>`` (illumination colour, lamp voltage T), or ``c``/``l``/``r``
(stereo, ignored here). Real ALOI lacks some files; the reader takes what is there.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from datasets.errors import DatasetFormatError
from datasets.invariance_sets.base import InvarianceSet

ALOI_FACTORS: tuple[str, ...] = ("viewpoint", "illumination_direction", "illumination_color")
# Preferred first: quarter resolution is what the evaluation needs and the fastest to read.
RESOLUTION_FOLDERS: tuple[str, ...] = ("png4", "png2", "png")

_FILE = re.compile(r"(?P<obj>\d+)_(?P<cond>[a-z0-9]+)\.png", re.IGNORECASE)
_CONDITIONS: dict[str, re.Pattern] = {
    "viewpoint": re.compile(r"r(\d+)", re.IGNORECASE),
    "illumination_direction": re.compile(r"l(\d+)c(\d+)", re.IGNORECASE),
    "illumination_color": re.compile(r"i(\d+)", re.IGNORECASE),
}
_STEREO = {"c", "l", "r"}


def resolution_folder(root: Path | str) -> Path:
    """The ``png4/``, ``png2/`` or ``png/`` folder of an ALOI root (or ``root`` if it is one)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: ALOI root does not exist or is not a folder")
    for name in RESOLUTION_FOLDERS:
        if (root / name).is_dir():
            return root / name
    if root.name in RESOLUTION_FOLDERS:
        return root
    raise DatasetFormatError(
        f"{root}: not an ALOI root: it has no {', '.join(n + '/' for n in RESOLUTION_FOLDERS)} folder "
        "and is not one (expected e.g. png4/1/1_r0.png)"
    )


def _object_folders(folder: Path) -> list[tuple[int, Path]]:
    """Numbered object folders, sorted by number; other entries are ignored."""
    with os.scandir(folder) as entries:
        objects = [(int(e.name), Path(e.path)) for e in entries if e.name.isdigit() and e.is_dir()]
    if not objects:
        raise DatasetFormatError(f"{folder}: no ALOI object folders (numbered 1, 2, ...) in it")
    return sorted(objects)


def _parse_object(number: int, folder: Path) -> dict[str, list[tuple[tuple[int, ...], Path]]]:
    """Condition key and path of each image in one object folder, per factor.

    Files that are not PNGs (and hidden files) are ignored; a PNG that is not named
    ``<number>_<condition>.png`` for this object is an error (a misplaced or renamed
    file would otherwise silently join the wrong trajectory).
    """
    found: dict[str, list[tuple[tuple[int, ...], Path]]] = {factor: [] for factor in ALOI_FACTORS}
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_file()]
    for name in names:
        if name.startswith(".") or not name.lower().endswith(".png"):
            continue
        match = _FILE.fullmatch(name)
        if match is None or int(match["obj"]) != number:
            raise DatasetFormatError(f"{folder / name}: expected a file named {number}_<condition>.png in object folder {number}")
        condition = match["cond"]
        if condition.lower() in _STEREO:
            continue
        for factor, pattern in _CONDITIONS.items():
            key = pattern.fullmatch(condition)
            if key is not None:
                found[factor].append((tuple(int(g) for g in key.groups()), folder / name))
                break
        else:
            raise DatasetFormatError(
                f"{folder / name}: unknown ALOI condition {condition!r} "
                "(expected r<angle>, l<L>c<C>, i<T>, or stereo c/l/r)"
            )
    return found


def read_aloi(root: Path | str, factor: str, max_objects: int = 0, pooled: bool = False) -> InvarianceSet:
    """Read ALOI's images for one factor of variation as local trajectories of each object.

    A trajectory varies the factor and nothing else. Viewpoint (``r<angle>``) and
    illumination colour (``i<T>``) vary one number, so each object has one trajectory.
    Illumination direction (``l<L>c<C>``) is photographed by three cameras, so by default
    each (object, camera) is a trajectory of the 8 lamps: pooled over cameras it would also
    vary the viewpoint (the cameras stand 15 degrees apart). ``pooled=True`` gives one
    trajectory per object, as before.

    ``root`` is the folder containing ``png4/`` (or ``png2/``, ``png/``) or that folder
    itself. Objects are taken in numeric order, conditions sorted by their numbers
    (angle; lamp then camera; voltage). ``max_objects > 0`` keeps the first that many
    objects that have images of ``factor``. Missing files are tolerated.
    """
    if factor not in ALOI_FACTORS:
        raise ValueError(f"unknown ALOI factor {factor!r}; choose from {', '.join(ALOI_FACTORS)}")
    if max_objects < 0:
        raise ValueError(f"max_objects must be >= 0, got {max_objects}")
    folder = resolution_folder(root)
    paths: list[Path] = []
    targets: list[int] = []
    trajectories: list[int] = []
    objects = 0
    for number, object_folder in _object_folders(folder):
        images = sorted(_parse_object(number, object_folder)[factor])
        if not images:
            continue
        paths += [path for _, path in images]
        targets += [number] * len(images)
        # Trajectory ids are per target (RIS pairs them with the target): the camera, for
        # lamp images unless pooled; a single trajectory otherwise.
        split_by_camera = factor == "illumination_direction" and not pooled
        trajectories += [key[1] if split_by_camera else 0 for key, _ in images]
        objects += 1
        if objects == max_objects:
            break
    if not paths:
        raise DatasetFormatError(f"{folder}: no {factor} images in any object folder")
    return InvarianceSet(factor, paths, np.asarray(targets, dtype=np.int64), np.asarray(trajectories, dtype=np.int64))


def validate_aloi_root(root: Path | str) -> Path:
    """Fast structural check of an ALOI root; returns its resolution folder.

    Checks the folder exists, has a resolution folder with numbered object folders, and
    that the first object folder's files follow ALOI's naming and include images. Cheap
    enough to run on the driver before any Ray work.
    """
    folder = resolution_folder(root)
    number, first = _object_folders(folder)[0]
    if not any(_parse_object(number, first).values()):
        raise DatasetFormatError(f"{first}: object folder has no ALOI images (expected e.g. {number}_r0.png)")
    return folder
