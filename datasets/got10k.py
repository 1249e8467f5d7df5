"""The GOT-10k tracking benchmark's on-disk layout: the one reader of it, and its occlusion set.

Every GOT-10k reader in the project goes through this module: the occlusion invariance
set below, the video pipeline's GOT-10k source (``datasets.video.sources``), the data
sources' root checks (``datasets.sources``) and the synthetic writer
(``datasets.synthetic.got10k``, which takes its file names from here). Layout
(../shared/reference/datasets.md, section 2)::

    <root>/train/list.txt                       one sequence folder name per line
    <root>/train/GOT-10k_Train_000001/00000001.jpg 00000002.jpg ...
                                      groundtruth.txt   x,y,w,h per frame (pixels, top-left)
                                      absence.label     0/1 per frame, 1 = target absent
                                      cover.label       visible-ratio level 0..8 per frame
                                      cut_by_image.label 0/1 per frame
                                      meta_info.ini     [METAINFO] object_class: ...

Frame ``i`` (0-based) is ``{i+1:08d}.jpg`` and line ``i + 1`` of every label file; the
test split annotates the first frame only. Bad input is a :class:`DatasetFormatError`
naming the file and what is wrong (a folder ``list.txt`` names but which is missing, a
frame an annotation line needs, a malformed line): a wrong or partly copied root is
refused, never read as a smaller dataset.

The paper measures occlusion invariance on GOT-10k's training set: "every frame
annotated with object bounding boxes and the amount of occlusion ... We crop each
bounding box to create a separate image. Local trajectories consisting of varying
occlusions are constructed for each video by using one sample for each unique level of
occlusion" (Sec. 3.2).
"""
from __future__ import annotations

import configparser
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from datasets.errors import DatasetFormatError
from datasets.invariance_sets.base import InvarianceSet

SPLITS: tuple[str, ...] = ("train", "val", "test")
LIST_FILE = "list.txt"
GROUNDTRUTH = "groundtruth.txt"
ABSENCE_LABEL = "absence.label"
COVER_LABEL = "cover.label"
CUT_BY_IMAGE_LABEL = "cut_by_image.label"
META_INFO = "meta_info.ini"
META_SECTION = "METAINFO"
# Sequence folder names: GOT-10k_Train_000001 ... (train), GOT-10k_Val_..., GOT-10k_Test_...
SEQUENCE_PREFIXES = {"train": "GOT-10k_Train", "val": "GOT-10k_Val", "test": "GOT-10k_Test"}
_FRAME_FILE = re.compile(r"(\d{8})\.jpg")
# cover.label: level k means a visible ratio in (UPPER[k-1], UPPER[k]]; 0 is fully
# hidden, 7 is (90 %, 100 %) and 8 exactly 100 % (GOT-10k's definition).
COVER_UPPER_BOUNDS: tuple[float, ...] = (0.0, 0.15, 0.30, 0.45, 0.60, 0.75, 0.90)
MAX_COVER_LEVEL = 8
OCCLUSION_TARGETS: tuple[str, ...] = ("sequence", "object_class")


def frame_name(index: int) -> str:
    """File name of 0-based frame ``index``: ``00000001.jpg`` for 0."""
    return f"{index + 1:08d}.jpg"


def sequence_name(split: str, number: int) -> str:
    """The folder name of 1-based sequence ``number`` of ``split``: ``GOT-10k_Train_000001``."""
    return f"{SEQUENCE_PREFIXES[split]}_{number:06d}"


def cover_level(visible_ratio: float) -> int:
    """GOT-10k's cover level (0..8) of a visible ratio in [0, 1]."""
    if not 0.0 <= visible_ratio <= 1.0:
        raise ValueError(f"visible ratio must be in [0, 1], got {visible_ratio}")
    if visible_ratio >= 1.0:
        return MAX_COVER_LEVEL
    return next((k for k, upper in enumerate(COVER_UPPER_BOUNDS) if visible_ratio <= upper), 7)


# --------------------------------------------------------------------------- one file each


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DatasetFormatError(f"{path}: missing (every GOT-10k sequence folder has one)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetFormatError(f"{path}: cannot read it as text ({err})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # a trailing newline or blank lines
        lines.pop()
    return lines


def read_groundtruth(path: Path | str) -> np.ndarray:
    """``groundtruth.txt`` as an (N, 4) float array of ``x, y, width, height`` rows.

    The box-line parser is TrackingNet's too (``datasets.video.sources.parse_box_lines``,
    which marks a malformed line with NaN so a TrackingNet video keeps its later lines);
    for GOT-10k a malformed line is an error naming the file and line.
    """
    from datasets.video.sources import parse_box_lines  # not at the top: that module reads GOT-10k through this one

    path = Path(path)
    lines = _lines(path)
    boxes, _ = parse_box_lines("\n".join(lines), path)
    bad = np.flatnonzero(np.isnan(boxes).any(axis=1))
    if len(bad):
        raise DatasetFormatError(f"{path}: line {bad[0] + 1} is {lines[bad[0]]!r}; expected x,y,width,height (4 numbers)")
    if not len(boxes):
        raise DatasetFormatError(f"{path}: no boxes in it")
    return boxes


def read_label(path: Path | str, max_value: int) -> np.ndarray:
    """A ``.label`` file (one integer per line, 0..``max_value``) as an int64 array."""
    path = Path(path)
    values = []
    for number, line in enumerate(_lines(path), start=1):
        text = line.strip()
        value = int(text) if text.isdigit() else -1
        if not 0 <= value <= max_value:
            raise DatasetFormatError(f"{path}: line {number} is {line!r}; expected an integer from 0 to {max_value}")
        values.append(value)
    return np.asarray(values, dtype=np.int64)


def read_meta_info(path: Path | str) -> dict[str, str]:
    """``meta_info.ini``'s ``[METAINFO]`` section as a dict (``object_class``, ``motion_class``, ...)."""
    path = Path(path)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path) as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise DatasetFormatError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, configparser.Error) as err:
        raise DatasetFormatError(f"{path}: not an .ini file GOT-10k writes ({err})") from None
    if not parser.has_section(META_SECTION):
        raise DatasetFormatError(f"{path}: has no [{META_SECTION}] section")
    return dict(parser[META_SECTION])


def frame_paths(folder: Path | str, annotated: int = 0) -> list[Path]:
    """A sequence's frames ``00000001.jpg, 00000002.jpg, ...`` in order (item ``i`` is frame ``i``).

    The numbers must run from 1 without a gap, at least to the ``annotated`` lines of its
    ``groundtruth.txt`` (all frames in train and val, the first in test); the first
    missing frame is an error naming it (and the annotation line that needs it).
    """
    folder = Path(folder)
    numbered: dict[int, Path] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _FRAME_FILE.fullmatch(entry.name)
            if match:
                numbered[int(match.group(1))] = Path(entry.path)
    last = max(max(numbered, default=0), annotated)
    if last == 0:
        raise DatasetFormatError(f"{folder}: no frames (expected {frame_name(0)}, {frame_name(1)}, ...)")
    missing = next((n for n in range(1, last + 1) if n not in numbered), None)
    if missing is not None:
        path = folder / frame_name(missing - 1)
        why = (f"line {missing} of {folder / GROUNDTRUTH} annotates it" if missing <= annotated
               else f"the frames go on to {frame_name(last - 1)}")
        raise DatasetFormatError(f"{path}: missing ({why})")
    return [numbered[n] for n in range(1, last + 1)]


# --------------------------------------------------------------------------- one sequence


@dataclass(frozen=True)
class Got10kSequence:
    """One GOT-10k sequence: its frames and per-frame annotations.

    ``boxes`` has one row per annotated frame (every frame in train and val, the first in
    test); the label arrays, when read, one entry per box. ``frames`` may be longer
    than ``boxes`` (test).
    """

    folder: Path
    frames: tuple[Path, ...]
    boxes: np.ndarray  # (N, 4) x, y, width, height
    absent: np.ndarray | None = None  # (N,) bool; None when the labels were not read
    cover: np.ndarray | None = None  # (N,) int64, 0..8; None when the labels were not read
    cut_by_image: np.ndarray | None = None  # (N,) bool; None when the file is absent or not read

    def __len__(self) -> int:
        return len(self.boxes)

    def frame(self, index: int) -> Path:
        return self.frames[index]


def read_sequence(folder: Path | str, labels: bool = True) -> Got10kSequence:
    """Read and cross-check a sequence folder: ``groundtruth.txt``, its frames and, with
    ``labels``, ``absence.label`` and ``cover.label`` (``cut_by_image.label`` when present).

    Every label file has one line per box of ``groundtruth.txt``, and every annotated
    frame is on disk. Raises DatasetFormatError naming the file (and line).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetFormatError(f"{folder}: GOT-10k sequence folder does not exist or is not a folder")
    boxes = read_groundtruth(folder / GROUNDTRUTH)
    frames = tuple(frame_paths(folder, annotated=len(boxes)))
    if not labels:
        return Got10kSequence(folder, frames, boxes)
    values = {}
    for name, max_value in ((ABSENCE_LABEL, 1), (COVER_LABEL, MAX_COVER_LEVEL), (CUT_BY_IMAGE_LABEL, 1)):
        path = folder / name
        if name == CUT_BY_IMAGE_LABEL and not path.exists():
            values[name] = None
            continue
        values[name] = read_label(path, max_value)
        if len(values[name]) != len(boxes):
            raise DatasetFormatError(f"{path}: has {len(values[name])} lines but {GROUNDTRUTH} has {len(boxes)} "
                                     "frames; expected one line per frame")
    cut = values[CUT_BY_IMAGE_LABEL]
    return Got10kSequence(folder, frames, boxes, values[ABSENCE_LABEL].astype(bool), values[COVER_LABEL],
                          None if cut is None else cut.astype(bool))


# --------------------------------------------------------------------------- folders


def split_folder(root: Path | str, split: str = "train") -> Path:
    """``<root>/<split>``, or ``root`` itself when it is already a split folder."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: GOT-10k root does not exist or is not a folder")
    if (root / split).is_dir():
        return root / split
    if (root / LIST_FILE).is_file():
        return root
    raise DatasetFormatError(f"{root}: not a GOT-10k root: no {split}/ folder in it and no {LIST_FILE} "
                             f"(expected e.g. {split}/{LIST_FILE} and {split}/{sequence_name(split, 1)}/{GROUNDTRUTH})")


def sequence_folders(split_dir: Path | str) -> list[Path]:
    """A split's sequence folders in ``list.txt``'s order (else its sorted folders holding a ``groundtruth.txt``).

    A name ``list.txt`` lists whose folder is missing is an error naming both.
    """
    split_dir = Path(split_dir)
    listing = split_dir / LIST_FILE
    if listing.is_file():
        names = [line.strip() for line in _lines(listing) if line.strip()]
        bad = next((n for n in names if "/" in n or "\\" in n or n in (".", "..")), None)
        if bad is not None:
            raise DatasetFormatError(f"{listing}: {bad!r} is not a sequence folder name")
        missing = [name for name in names if not (split_dir / name).is_dir()]
        if missing:
            raise DatasetFormatError(f"{listing}: lists {missing[0]!r} but {split_dir / missing[0]} is not a folder"
                                     + (f" ({len(missing)} listed folders are missing)" if len(missing) > 1 else ""))
    else:
        with os.scandir(split_dir) as entries:
            names = sorted(e.name for e in entries if e.is_dir() and (Path(e.path) / GROUNDTRUTH).is_file())
    if not names:
        raise DatasetFormatError(f"{split_dir}: no GOT-10k sequences (no {LIST_FILE} entries or sequence folders)")
    return [split_dir / name for name in names]


def is_got10k(folder: Path | str) -> bool:
    """Whether ``folder`` looks like a GOT-10k root, split or sequence (cheap: no file is read)."""
    folder = Path(folder)
    return ((folder / LIST_FILE).is_file() or (folder / GROUNDTRUTH).is_file()
            or any((folder / split).is_dir() for split in SPLITS)
            or any((p / GROUNDTRUTH).is_file() for p in folder.iterdir() if p.is_dir()))


def sequence_folders_under(root: Path | str) -> list[Path]:
    """The sequence folders of a GOT-10k root (its splits present, in train, val, test
    order), of one split folder, or ``[root]`` when it is one sequence."""
    root = Path(root)
    if (root / GROUNDTRUTH).is_file():
        return [root]
    splits = [root / split for split in SPLITS if (root / split).is_dir()]
    if splits and not (root / LIST_FILE).is_file():
        return [folder for split in splits for folder in sequence_folders(split)]
    return sequence_folders(root)


def validate_got10k_root(root: Path | str, split: str | None = None) -> Path:
    """Structural check (the driver runs it before any Ray work); returns the split folder.

    The split folder (``split``, or the first of train/val/test present) lists sequences,
    every listed folder exists and the first sequence reads. Cheap: one ``stat`` per
    listed folder and one sequence read.
    """
    if split is None:
        split = next((s for s in SPLITS if (Path(root) / s).is_dir()), SPLITS[0])
    folder = split_folder(root, split)
    read_sequence(sequence_folders(folder)[0])
    return folder


# --------------------------------------------------------------------------- occlusion set

def _frame_fits(path: Path, box: np.ndarray) -> str | None:
    """Why frame ``path`` cannot give a crop of ``box`` (x, y, w, h), or None if it can.

    Reads only the image header, so choosing frames stays cheap.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        # read_sequence found it: it went while the set was read.
        raise DatasetFormatError(f"{path}: missing (its sequence's {GROUNDTRUTH} annotates it)") from None
    except (UnidentifiedImageError, OSError):
        return "unreadable_frames"
    x, y, w, h = box
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return "boxes_outside_image"
    return None


def occlusion_samples(sequence: Got10kSequence, min_level: int = 1) -> tuple[dict[int, int], Counter]:
    """One frame per distinct cover level: ``{level: frame index}``, and what was skipped.

    Frames marked absent, with an empty box (width or height <= 0) or a cover level
    below ``min_level`` are not candidates. For each level the earliest candidate whose
    frame exists, decodes its header and overlaps its box is taken; frames failing that
    are counted (``unreadable_frames``, ``boxes_outside_image``) and the next candidate
    of the level is tried. ``sequence`` is read with its labels (:func:`read_sequence`).
    """
    skipped: Counter = Counter()
    skipped["absent_frames"] += int(sequence.absent.sum())
    empty = (sequence.boxes[:, 2] <= 0) | (sequence.boxes[:, 3] <= 0)
    skipped["zero_boxes"] += int((empty & ~sequence.absent).sum())
    candidates = ~sequence.absent & ~empty & (sequence.cover >= min_level)
    chosen: dict[int, int] = {}
    for index in np.flatnonzero(candidates).tolist():
        level = int(sequence.cover[index])
        if level in chosen:
            continue
        reason = _frame_fits(sequence.frame(index), sequence.boxes[index])
        if reason is None:
            chosen[level] = index
        else:
            skipped[reason] += 1
    return dict(sorted(chosen.items())), skipped


def read_occlusion(root: Path | str, split: str = "train", target: str = "sequence", max_targets: int = 0,
                   min_level: int = 1, crop_max_side: int = 224) -> InvarianceSet:
    """GOT-10k's occlusion invariance set: one trajectory per sequence (paper Sec. 3.2).

    A sequence's trajectory holds the target cut out by its box from one frame per
    distinct cover level present (:func:`occlusion_samples`); sequences with fewer
    than two levels contribute nothing and are counted (``sequences_too_few_levels``);
    a listed sequence whose folder is missing, or a missing annotated frame, is an error
    (:func:`sequence_folders`, :func:`read_sequence`), as is any malformed file. ``target``
    is ``"sequence"`` (each sequence is its own target, one object in one video, so only
    the occlusion varies within it: Eq. 2's local firing rate averages over all of a
    target's samples, so that is what the score measures) or ``"object_class"`` (the
    ``object_class`` of ``meta_info.ini``; a class's sequences are its trajectories, of
    unequal sizes, and a target then also varies in the instance, its pose and scene).
    ``max_targets > 0`` keeps the first that many targets in list order. Crops are
    written once into the cache (:mod:`datasets.crops`); ``sources`` holds each crop's
    frame path.
    """
    from datasets.crops import CropRequest, write_crops

    if target not in OCCLUSION_TARGETS:
        raise ValueError(f"target must be one of {', '.join(OCCLUSION_TARGETS)}, got {target!r}")
    if max_targets < 0:
        raise ValueError(f"max_targets must be >= 0, got {max_targets}")
    folder = split_folder(root, split)
    skipped: Counter = Counter()
    target_ids: dict[str, int] = {}
    chosen: list[tuple[int, int, Got10kSequence, dict[int, int]]] = []  # target, trajectory, ...
    for sequence_folder in sequence_folders(folder):
        label = (sequence_folder.name if target == "sequence"
                 else read_meta_info(sequence_folder / META_INFO).get("object_class"))
        if not label:
            raise DatasetFormatError(f"{sequence_folder / META_INFO}: no object_class in [{META_SECTION}]")
        if label not in target_ids and 0 < max_targets <= len(target_ids):
            if target == "sequence":
                break  # list order: no later sequence can join a kept target
            continue
        sequence = read_sequence(sequence_folder)
        levels, sequence_skipped = occlusion_samples(sequence, min_level)
        skipped.update(sequence_skipped)
        if len(levels) < 2:
            skipped["sequences_too_few_levels"] += 1
            continue
        target_ids.setdefault(label, len(target_ids))
        chosen.append((target_ids[label], len(chosen), sequence, levels))

    requests, owners = [], []
    for target_id, trajectory, sequence, levels in chosen:
        for index in levels.values():
            x, y, w, h = sequence.boxes[index]
            requests.append(CropRequest(sequence.frame(index), (x, y, x + w, y + h)))
            owners.append((target_id, trajectory))
    crops, crop_skipped = write_crops(Path(root), f"got10k-occlusion-{split}", requests, crop_max_side)
    skipped.update({("unreadable_frames" if k == "unreadable_images" else k): v
                    for k, v in crop_skipped.items()})
    frames = [str(request.image) for request in requests]
    kept = [(path, owner, frame) for path, owner, frame in zip(crops, owners, frames) if path is not None]
    sizes = Counter(owner for _, owner, _ in kept)
    short = {owner for owner, size in sizes.items() if size < 2}  # lost a level while cutting
    skipped["sequences_too_few_levels"] += len(short)
    kept = [(path, owner, frame) for path, owner, frame in kept if owner not in short]
    if len({owner[0] for _, owner, _ in kept}) < 1:
        raise DatasetFormatError(f"{folder}: no sequence has frames at two or more cover levels "
                                 f"(skipped: {dict(skipped) or 'nothing'})")
    return InvarianceSet(
        "occlusion", [path for path, _, _ in kept],
        np.asarray([owner[0] for _, owner, _ in kept], dtype=np.int64),
        np.asarray([owner[1] for _, owner, _ in kept], dtype=np.int64),
        skipped={k: v for k, v in sorted(skipped.items()) if v},
        sources=tuple(frame for _, _, frame in kept),
    )
