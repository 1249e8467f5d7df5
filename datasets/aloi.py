"""Reader for the Amsterdam Library of Object Images (ALOI) in its real on-disk layout.

The paper measures viewpoint, illumination-direction and illumination-colour
invariance on ALOI, which "directly provides 1000 local trajectories for each of the
annotated properties" (Section 3.2): every object's images under one factor form its
trajectories (illumination direction: one per camera, see :func:`read_aloi`). Layout (one folder per resolution, as the tars unpack)::

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


def read_aloi(root: Path | str, factor: str, max_objects: int = 0, pooled: bool = False,
              camera: int = 0) -> InvarianceSet:
    """Read ALOI's images for one factor of variation as local trajectories of each object.

    Targets are the object numbers. A trajectory varies the factor and nothing else.
    Viewpoint (``r<angle>``) and illumination colour (``i<T>``) files vary one number, so
    each object is one trajectory, whose id is the object number. Illumination direction
    (``l<L>c<C>``) is photographed by three cameras (the synthetic ones stand at -15, 0
    and +15 degrees), so by default each (object, camera) is a trajectory of the 8 lamps,
    with an id of its own (numbered in reading order); ``pooled=True`` gives one trajectory
    per object, id = object number, as before.

    The grouping alone does not keep the viewpoint out of the score: RIS's firing
    threshold and global rate are per target (Appendix A) and, with equal-length
    trajectories, the local rate of Eq. 2 is the firing rate over all the target's images
    however they are grouped, so a unit must still fire under all three cameras.
    ``camera=C`` (1..3) keeps only camera C's lamp images, so that the target's images
    differ in the lamp alone; ``camera=0`` keeps every camera.

    ``root`` is the folder containing ``png4/`` (or ``png2/``, ``png/``) or that folder
    itself. Objects are taken in numeric order, conditions sorted by their numbers
    (angle; lamp then camera; voltage). ``max_objects > 0`` keeps the first that many
    objects that have images of ``factor`` (of ``camera``, when one is chosen). Missing
    files are tolerated.
    """
    if factor not in ALOI_FACTORS:
        raise ValueError(f"unknown ALOI factor {factor!r}; choose from {', '.join(ALOI_FACTORS)}")
    if max_objects < 0:
        raise ValueError(f"max_objects must be >= 0, got {max_objects}")
    if isinstance(camera, bool) or not isinstance(camera, int) or camera < 0:
        raise ValueError(f"camera must be 0 (every camera) or a camera number >= 1, got {camera!r}")
    if camera and factor != "illumination_direction":
        raise ValueError(f"camera={camera} applies to illumination_direction only: ALOI's {factor} "
                         "files name no camera")
    folder = resolution_folder(root)
    # Lamp images are keyed (lamp, camera); the others have no camera.
    split_by_camera = factor == "illumination_direction" and not pooled and not camera
    paths: list[Path] = []
    targets: list[int] = []
    trajectories: list[int] = []
    trajectory_ids: dict[tuple[int, int], int] = {}  # (object, camera) -> its trajectory id
    objects = 0
    for number, object_folder in _object_folders(folder):
        images = sorted(_parse_object(number, object_folder)[factor])
        if camera:
            images = [(key, path) for key, path in images if key[1] == camera]
        if not images:
            continue
        paths += [path for _, path in images]
        targets += [number] * len(images)
        if split_by_camera:
            trajectories += [trajectory_ids.setdefault((number, key[1]), len(trajectory_ids)) for key, _ in images]
        else:
            trajectories += [number] * len(images)
        objects += 1
        if objects == max_objects:
            break
    if not paths:
        which = f"{factor} images of camera {camera}" if camera else f"{factor} images"
        raise DatasetFormatError(f"{folder}: no {which} in any object folder")
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
