"""Reader for PASCAL3D+ release 1.1 in its real on-disk layout, and its instance sets.

The paper measures instance and instance+viewpoint invariance on PASCAL3D+ (Sec. 3.2):
"We again crop each bounding box to create a separate image. Local trajectories
consisting of objects from the same category, but different viewpoints are collected by
ensuring that each trajectory only contains one image for each unique viewpoint.
Additionally, we can construct local trajectories containing objects belonging to the
same category and depicted in the same viewpoint, restricting the transformation to
instance changes only."

Targets: under Eq. 2 the local firing rate ``L_y(i)`` averages over every sample of
target ``y``; when the trajectories of ``y`` partition its samples it is the unit's
firing fraction on ``y`` however they are grouped. So what a target holds decides what
the score measures, and a target must vary only in the factor the set is named after:

- ``instance``: one target per (category, viewpoint bin); its one trajectory is the
  objects of that category seen from that bin, so only the instance varies;
- ``instance_viewpoint``: one target per category; its trajectories hold one object per
  viewpoint bin (the ``j``-th object of every bin), so instance and viewpoint vary.

Layout (../shared/reference/datasets.md, section 3)::

    <root>/Annotations/<cls>_pascal/<id>.mat     <root>/Images/<cls>_pascal/<id>.jpg
    <root>/Annotations/<cls>_imagenet/<id>.mat   <root>/Images/<cls>_imagenet/<id>.JPEG

Each ``.mat`` holds one struct ``record`` with ``filename`` and ``objects`` (1 x K, all
objects in the image, of any class); per object ``class``, ``bbox`` = [x1 y1 x2 y2]
(1-based, inclusive), ``truncated``, ``occluded``, ``difficult`` and ``viewpoint``
(``azimuth``, ``elevation`` in degrees; when ``distance`` is 0 only ``azimuth_coarse``
and ``elevation_coarse`` are valid, as in the official viewer).

A viewpoint is discretised into bins: ``azimuth_bins`` equal sectors of the circle,
the first centred on azimuth 0 (the default 8 gives 45-degree sectors: front, front-left,
left, ...), times ``elevation_bins`` equal bands of [-90, 90] degrees (the default 3
gives below -30, -30 to 30, above 30 degrees).
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from datasets.errors import DatasetFormatError
from datasets.invariance_sets.base import InvarianceSet

PASCAL3D_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "boat", "bottle", "bus", "car", "chair", "diningtable", "motorbike", "sofa", "train",
    "tvmonitor",
)
SUBSETS: tuple[str, ...] = ("pascal", "imagenet")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".JPEG", ".jpeg", ".png")


@dataclass(frozen=True)
class Pascal3DObject:
    """One annotated object of the category its annotation folder is named after."""

    category: str
    annotation: Path  # the .mat file
    index: int  # 0-based position in record.objects
    image: Path
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2: 1-based, inclusive
    azimuth: float | None  # degrees; None when the object has no usable viewpoint
    elevation: float | None
    truncated: bool
    occluded: bool
    difficult: bool

    def crop_edges(self) -> tuple[float, float, float, float]:
        """The box as 0-based pixel edges (left, top, right, bottom), right/bottom exclusive."""
        x1, y1, x2, y2 = self.bbox
        return x1 - 1.0, y1 - 1.0, x2, y2


def viewpoint_bin(azimuth: float, elevation: float, azimuth_bins: int = 8, elevation_bins: int = 3) -> int:
    """The bin of a viewpoint: ``azimuth_sector * elevation_bins + elevation_band`` (see module docstring)."""
    width = 360.0 / azimuth_bins
    sector = int(((azimuth + width / 2) % 360.0) // width) % azimuth_bins
    band = min(elevation_bins - 1, max(0, int((elevation + 90.0) // (180.0 / elevation_bins))))
    return sector * elevation_bins + band


def _field(struct, name: str, path: Path, what: str):
    if name not in getattr(struct, "_fieldnames", ()):
        raise DatasetFormatError(f"{path}: {what} has no field '{name}'")
    return getattr(struct, name)


def _scalar(value) -> float | None:
    array = np.asarray(value, dtype=np.float64).ravel() if np.size(value) else np.empty(0)
    return float(array[0]) if array.size == 1 and np.isfinite(array[0]) else None


def _flag(struct, name: str) -> bool:
    # Missing or empty flags count as 0, as PASCAL's own tools read them.
    value = getattr(struct, name, 0)
    scalar = _scalar(value) if np.size(value) else None
    return bool(scalar) if scalar is not None else False


def _viewpoint(obj) -> tuple[float | None, float | None]:
    viewpoint = getattr(obj, "viewpoint", None)
    if viewpoint is None or not hasattr(viewpoint, "_fieldnames"):
        return None, None  # absent or an empty array
    names = viewpoint._fieldnames
    coarse = "distance" in names and _scalar(viewpoint.distance) == 0.0
    keys = ("azimuth_coarse", "elevation_coarse") if coarse else ("azimuth", "elevation")
    if not all(k in names for k in keys):
        return None, None
    azimuth, elevation = _scalar(getattr(viewpoint, keys[0])), _scalar(getattr(viewpoint, keys[1]))
    if azimuth is None or elevation is None:
        return None, None
    return azimuth, elevation


def find_image(image_folder: Path, filename: str | None, stem: str) -> Path:
    """The image of an annotation: ``record.filename`` in ``image_folder``, else ``<stem>.<jpg|JPEG|...>``."""
    if filename:
        return image_folder / Path(filename).name
    for suffix in IMAGE_SUFFIXES:
        if (image_folder / f"{stem}{suffix}").exists():
            return image_folder / f"{stem}{suffix}"
    return image_folder / f"{stem}.jpg"


def read_annotation(path: Path | str, image_folder: Path | str) -> list[Pascal3DObject]:
    """Every object of one ``.mat`` annotation (any class), in ``record.objects`` order.

    Raises DatasetFormatError naming the file when it is not a MATLAB file, has no
    ``record``, or an object lacks ``class`` or a 4-number ``bbox``.
    """
    path, image_folder = Path(path), Path(image_folder)
    try:
        mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    except FileNotFoundError:
        raise DatasetFormatError(f"{path}: missing") from None
    except Exception as err:  # scipy raises ValueError, TypeError, OSError... on a bad file
        raise DatasetFormatError(f"{path}: not a readable MATLAB .mat file ({type(err).__name__}: {err})") from None
    if "record" not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
        raise DatasetFormatError(f"{path}: no 'record' variable (found {found}); not a PASCAL3D+ annotation")
    record = mat["record"]
    if not hasattr(record, "_fieldnames"):
        raise DatasetFormatError(f"{path}: 'record' is not a MATLAB struct")
    objects = _field(record, "objects", path, "record")
    objects = [objects] if hasattr(objects, "_fieldnames") else list(np.atleast_1d(objects))
    filename = getattr(record, "filename", None)
    image = find_image(image_folder, str(filename) if isinstance(filename, str) and filename else None, path.stem)
    out = []
    for index, obj in enumerate(objects):
        if not hasattr(obj, "_fieldnames"):
            raise DatasetFormatError(f"{path}: record.objects({index + 1}) is not a struct")
        category = _field(obj, "class", path, f"record.objects({index + 1})")
        bbox = np.asarray(_field(obj, "bbox", path, f"record.objects({index + 1})"), dtype=np.float64).ravel()
        if not isinstance(category, str) or bbox.size != 4 or not np.all(np.isfinite(bbox)):
            raise DatasetFormatError(f"{path}: record.objects({index + 1}) needs a class name and a bbox "
                                     f"[x1 y1 x2 y2], got {category!r} and {bbox.tolist()}")
        azimuth, elevation = _viewpoint(obj)
        out.append(Pascal3DObject(category, path, index, image, tuple(bbox.tolist()), azimuth, elevation,
                                  _flag(obj, "truncated"), _flag(obj, "occluded"), _flag(obj, "difficult")))
    return out


def annotation_folders(root: Path | str) -> list[tuple[str, str, Path]]:
    """``(category, subset, folder)`` for every ``Annotations/<cls>_<pascal|imagenet>/``, sorted."""
    root = Path(root)
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise DatasetFormatError(f"{root}: not a PASCAL3D+ root: no Annotations/ folder "
                                 "(expected Annotations/<class>_pascal/<id>.mat)")
    found = []
    with os.scandir(annotations) as entries:
        for entry in entries:
            category, _, subset = entry.name.rpartition("_")
            if entry.is_dir() and category and subset in SUBSETS:
                found.append((category, subset, Path(entry.path)))
    if not found:
        raise DatasetFormatError(f"{annotations}: no <class>_pascal or <class>_imagenet folders in it")
    return sorted(found)


def validate_pascal3d_root(root: Path | str) -> None:
    """Fast structural check: annotation folders exist and the first ``.mat`` found parses."""
    root = Path(root)
    for category, subset, folder in annotation_folders(root):
        first = next(iter(sorted(folder.glob("*.mat"))), None)
        if first is not None:
            read_annotation(first, root / "Images" / f"{category}_{subset}")
            return
    raise DatasetFormatError(f"{root / 'Annotations'}: no .mat annotation files in any class folder")


@dataclass(frozen=True)
class ObjectFilter:
    """Which objects take part: the paper's sets use clean views of whole objects."""

    include_truncated: bool = False
    include_occluded: bool = False
    include_difficult: bool = False
    subsets: tuple[str, ...] = SUBSETS

    def reason_to_skip(self, obj: Pascal3DObject) -> str | None:
        if obj.truncated and not self.include_truncated:
            return "truncated_objects"
        if obj.occluded and not self.include_occluded:
            return "occluded_objects"
        if obj.difficult and not self.include_difficult:
            return "difficult_objects"
        if obj.azimuth is None:
            return "objects_without_viewpoint"
        if not obj.image.exists():
            # An annotated image that is not there: a wrong or partly copied root, not an object to leave out.
            raise DatasetFormatError(f"{obj.image}: missing (annotated in {obj.annotation})")
        return None


def read_objects(root: Path | str, keep: ObjectFilter) -> tuple[dict[str, list[Pascal3DObject]], Counter]:
    """The objects that pass ``keep``, per category (sorted names), in file then object order.

    Objects of another class than their folder's (PASCAL images show several classes) are
    left to that class's folder, not counted.
    """
    root = Path(root)
    skipped: Counter = Counter()
    per_category: dict[str, list[Pascal3DObject]] = {}
    for category, subset, folder in annotation_folders(root):
        if subset not in keep.subsets:
            continue
        images = root / "Images" / f"{category}_{subset}"
        for path in sorted(folder.glob("*.mat")):
            for obj in read_annotation(path, images):
                if obj.category != category:
                    continue
                reason = keep.reason_to_skip(obj)
                if reason is None:
                    per_category.setdefault(category, []).append(obj)
                else:
                    skipped[reason] += 1
    return dict(sorted(per_category.items())), skipped


INSTANCE_FACTORS: tuple[str, ...] = ("instance", "instance_viewpoint")


def instance_targets(per_category: dict[str, list[Pascal3DObject]], factor: str, azimuth_bins: int = 8,
                     elevation_bins: int = 3, max_targets: int = 0
                     ) -> tuple[list[tuple[str, list[list[Pascal3DObject]]]], int]:
    """The targets of ``factor``, each ``(label, trajectories)``, and how many objects were left alone.

    ``instance``: a target per (category, viewpoint bin), labelled ``<category>@<bin>``,
    whose one trajectory is the bin's objects: only the instance varies within it.
    ``instance_viewpoint``: a target per category; trajectory ``j`` takes the ``j``-th
    object of every viewpoint bin that has one, so it holds one image per distinct
    viewpoint. Trajectories need two objects; a target without one is left out. Targets
    in category then bin order; objects keep their order (file, then ``record.objects``).
    ``max_targets > 0`` stops at that many targets (what lies beyond is not counted).
    """
    if factor not in INSTANCE_FACTORS:
        raise ValueError(f"factor must be one of {', '.join(INSTANCE_FACTORS)}, got {factor!r}")
    targets: list[tuple[str, list[list[Pascal3DObject]]]] = []
    alone = 0
    for category, objects in per_category.items():
        bins: dict[int, list[Pascal3DObject]] = {}
        for obj in objects:
            bins.setdefault(viewpoint_bin(obj.azimuth, obj.elevation, azimuth_bins, elevation_bins), []).append(obj)
        ordered = sorted(bins.items())
        if factor == "instance":
            candidates = [(f"{category}@{b}", [group]) for b, group in ordered]
        else:
            longest = max(len(group) for _, group in ordered)
            candidates = [(category, [[group[j] for _, group in ordered if j < len(group)] for j in range(longest)])]
        for label, groups in candidates:
            if 0 < max_targets <= len(targets):
                return targets, alone
            kept = [group for group in groups if len(group) >= 2]
            alone += sum(len(group) for group in groups if len(group) < 2)
            if kept:
                targets.append((label, kept))
    return targets, alone


def read_instance_set(root: Path | str, factor: str, keep: ObjectFilter = ObjectFilter(), azimuth_bins: int = 8,
                      elevation_bins: int = 3, max_targets: int = 0, crop_max_side: int = 224) -> InvarianceSet:
    """PASCAL3D+'s ``instance`` or ``instance_viewpoint`` set (paper Sec. 3.2).

    Targets as :func:`instance_targets` builds them (module docstring: why a target
    varies only in the named factor). ``max_targets > 0`` keeps the first that many
    targets. Skip counts: objects excluded by ``keep`` (``truncated_objects``, ...,
    ``missing_images``), ``objects_without_trajectory`` (alone in their group), and
    crops that could not be cut (``unreadable_images``, ``boxes_outside_image``).
    Every kept object of a category with a kept target is cropped, so the two factors
    share one crop folder when their options agree. ``sources`` names each sample's
    ``<annotation>.mat#<object index>`` (0-based in ``record.objects``).
    """
    from datasets.crops import CropRequest, write_crops

    if min(azimuth_bins, elevation_bins) < 1:
        raise ValueError(f"azimuth_bins and elevation_bins must be >= 1, got {azimuth_bins}, {elevation_bins}")
    root = Path(root)
    per_category, skipped = read_objects(root, keep)
    chosen, alone = instance_targets(per_category, factor, azimuth_bins, elevation_bins, max_targets)
    skipped["objects_without_trajectory"] += alone
    categories = {group[0].category for _, groups in chosen for group in groups}
    all_objects = [obj for category in per_category if category in categories for obj in per_category[category]]
    crops, crop_skipped = write_crops(root, "pascal3d", [CropRequest(o.image, o.crop_edges()) for o in all_objects],
                                      crop_max_side)
    skipped.update(crop_skipped)
    crop_of = {(o.annotation, o.index): path for o, path in zip(all_objects, crops)}
    paths, targets, trajectories, sources = [], [], [], []
    trajectory = 0
    target_id = 0
    for _, groups in chosen:
        kept_any = False
        for group in groups:
            kept = [(crop_of[(o.annotation, o.index)], o) for o in group]
            kept = [(path, o) for path, o in kept if path is not None]
            if len(kept) < 2:
                skipped["objects_without_trajectory"] += len(kept)
                continue
            paths += [path for path, _ in kept]
            sources += [f"{o.annotation}#{o.index}" for _, o in kept]
            targets += [target_id] * len(kept)
            trajectories += [trajectory] * len(kept)
            trajectory += 1
            kept_any = True
        target_id += kept_any
    if not paths:
        where = "in different viewpoint bins" if factor == "instance_viewpoint" else "in one viewpoint bin"
        raise DatasetFormatError(f"{root}: no {factor} trajectories (two or more objects of one category {where}); "
                                 f"skipped: {dict(skipped) or 'nothing'}")
    return InvarianceSet(factor, paths, np.asarray(targets, dtype=np.int64), np.asarray(trajectories, dtype=np.int64),
                         skipped={k: v for k, v in sorted(skipped.items()) if v}, sources=tuple(sources))
