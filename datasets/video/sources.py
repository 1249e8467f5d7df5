"""Video sources in their real on-disk layouts: TrackingNet, GOT-10k, folders of video files.

Layouts (``shared/reference/datasets.md``):

- TrackingNet: ``<root>/TRAIN_<i>/frames/<video>/<n>.jpg`` (``n`` from 0, not zero-padded:
  sorted numerically) and ``<root>/TRAIN_<i>/anno/<video>.txt`` (one ``x,y,w,h`` line per
  frame; TEST holds the first frame only). ``root`` may also be one chunk folder.
- GOT-10k: ``<root>/{train,val,test}/<seq>/00000001.jpg ...`` with ``groundtruth.txt``
  (``xmin,ymin,width,height`` per frame) and label files, read by :mod:`datasets.got10k`
  (the one reader of that layout); ``root`` may be a split or one sequence.
- Any folder of video files (``.mp4``, ``.avi``, ``.mkv``), decoded with OpenCV.

Discovery (:func:`discover_videos`) only lists folders, so it is cheap on the driver
(and on the workers, which rediscover to find the cached stages); frames are listed and
decoded later, per video, by :class:`OpenedVideo` on the workers. A malformed TrackingNet
annotation line or an unreadable frame is reported and counted, never fatal. A GOT-10k
root is refused instead, as the occlusion set's reader refuses it: discovery checks that
every folder ``list.txt`` names is there, and :func:`check_sources` (run on the driver
before the frames stage decodes) reads every sequence's ``groundtruth.txt`` and frame
listing, naming the file and line of the first error.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datasets.cache import file_stamp
from datasets.errors import DatasetFormatError
from datasets.got10k import GROUNDTRUTH, is_got10k, read_sequence, sequence_folders_under

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv")
_TRACKINGNET_FRAME = re.compile(r"(\d+)\.jpe?g", re.IGNORECASE)


@dataclass(frozen=True)
class VideoSource:
    """One video as discovered: where it is, how to read it, and what identifies its content.

    ``kind`` is ``"trackingnet"`` or ``"got10k"`` (a folder of frames) or ``"file"``;
    ``annotation`` is the box file ("" if none); ``fingerprint`` changes when the video's
    files change (folder or file size and modification time), so stage cache keys do.
    """

    video: str
    kind: str
    path: str
    annotation: str = ""
    fingerprint: str = ""


# --------------------------------------------------------------------------- annotations


def parse_box_lines(text: str, path: str | Path = "<text>") -> tuple[np.ndarray, list[str]]:
    """Boxes ``(N, 4)`` float ``x, y, w, h`` from box-file text, and the problems found.

    One box per line, fields split on commas (TrackingNet, GOT-10k) or whitespace.
    A malformed line (not four finite numbers) gives a NaN row, so later lines keep
    their frame numbers, and a problem naming the file, the line number and its text.
    """
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are not frames
        lines.pop()
    boxes = np.full((len(lines), 4), np.nan)
    problems = []
    for number, line in enumerate(lines, start=1):
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        try:
            values = [float(f) for f in fields]
            if len(values) != 4 or not all(math.isfinite(v) for v in values):
                raise ValueError
        except ValueError:
            problems.append(f"{path}:{number}: malformed box line {line.strip()[:60]!r} (expected x,y,w,h)")
            continue
        boxes[number - 1] = values
    return boxes, problems


def read_box_file(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """:func:`parse_box_lines` of a file; a missing or undecodable file is one problem, no boxes."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        return np.zeros((0, 4)), [f"{path}: cannot read annotation file: {error}"]
    return parse_box_lines(text, path)


# --------------------------------------------------------------------------- TrackingNet


def trackingnet_frame_paths(folder: str | Path) -> list[tuple[int, Path]]:
    """``(n, path)`` of a TrackingNet frame folder's ``<n>.jpg`` files, in numeric order.

    Frame numbers are not zero-padded, so ``10.jpg`` comes after ``9.jpg``. Files whose
    names are not a number are ignored.
    """
    numbered = []
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _TRACKINGNET_FRAME.fullmatch(entry.name)
            if match and entry.is_file():
                numbered.append((int(match.group(1)), Path(entry.path)))
    return sorted(numbered)


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _fingerprint(path: Path, *more: Path) -> str:
    return "/".join(file_stamp(item) for item in (path, *more))


def trackingnet_chunk_folders(root: str | Path) -> list[Path]:
    """The chunk folders (``TRAIN_0`` ... ``TEST``) of a TrackingNet root, or ``[root]`` for one chunk."""
    root = Path(root)
    if (root / "frames").is_dir():
        return [root]
    chunks = [p for p in root.iterdir() if p.is_dir() and (p / "frames").is_dir()]
    return sorted(chunks, key=lambda p: _natural_key(p.name))


def discover_trackingnet(root: str | Path) -> list[VideoSource]:
    """Every video of a TrackingNet root (or chunk folder), named ``<chunk>/<video>``."""
    root = Path(root)
    chunks = trackingnet_chunk_folders(root)
    if not chunks:
        raise DatasetFormatError(f"{root}: no TrackingNet chunk folder (expected {root}/TRAIN_<i>/frames/<video>/0.jpg)")
    videos = []
    for chunk in chunks:
        for folder in sorted((p for p in (chunk / "frames").iterdir() if p.is_dir()), key=lambda p: p.name):
            annotation = chunk / "anno" / f"{folder.name}.txt"
            videos.append(VideoSource(
                video=f"{chunk.name}/{folder.name}", kind="trackingnet", path=str(folder),
                annotation=str(annotation) if annotation.is_file() else "",
                fingerprint=_fingerprint(folder, annotation),
            ))
    return videos


# --------------------------------------------------------------------------- GOT-10k


def discover_got10k(root: str | Path) -> list[VideoSource]:
    """Every sequence of a GOT-10k root, split or sequence folder, named by its path under ``root``.

    A folder ``list.txt`` names but which is missing is an error naming both.
    """
    root = Path(root)
    videos = []
    for folder in sequence_folders_under(root):
        relative = folder.relative_to(root).as_posix() if folder != root else folder.name
        annotation = folder / GROUNDTRUTH
        videos.append(VideoSource(video=relative, kind="got10k", path=str(folder), annotation=str(annotation),
                                  fingerprint=_fingerprint(folder, annotation)))
    return videos


def check_sources(videos: list[VideoSource]) -> None:
    """Read each GOT-10k sequence of ``videos`` whole (``groundtruth.txt``, the frame listing):
    a malformed line or a missing annotated frame raises DatasetFormatError naming it.

    The frames stage runs it on the driver before decoding; a cached stage needs no
    rerun, as its key holds the stamps of each sequence's folder and ``groundtruth.txt``.
    """
    for video in videos:
        if video.kind == "got10k":
            read_sequence(video.path, labels=False)


# --------------------------------------------------------------------------- video files


def discover_video_files(root: str | Path) -> list[VideoSource]:
    """Every ``.mp4``/``.avi``/``.mkv`` file under ``root`` (any case), or ``root`` itself if it is one."""
    root = Path(root)
    if root.is_file():
        files = [root] if root.suffix.lower() in VIDEO_EXTENSIONS else []
        base = root.parent
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        base = root
    if not files:
        raise DatasetFormatError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    return [VideoSource(video=p.relative_to(base).as_posix(), kind="file", path=str(p), fingerprint=_fingerprint(p))
            for p in files]


# --------------------------------------------------------------------------- any source


def detect_format(root: str | Path) -> str:
    """``"trackingnet"``, ``"got10k"`` or ``"video-files"`` from what is under ``root``."""
    root = Path(root)
    if not root.exists():
        raise DatasetFormatError(f"{root}: video source does not exist")
    if root.is_file():
        return "video-files"
    if trackingnet_chunk_folders(root):
        return "trackingnet"
    if is_got10k(root):
        return "got10k"
    if any(p.suffix.lower() in VIDEO_EXTENSIONS for p in root.rglob("*")):
        return "video-files"
    raise DatasetFormatError(
        f"{root}: not a TrackingNet root (TRAIN_<i>/frames/), a GOT-10k root (train/<seq>/groundtruth.txt) "
        f"or a folder of video files ({', '.join(VIDEO_EXTENSIONS)})"
    )


def discover_videos(root: str | Path, source_format: str = "auto") -> list[VideoSource]:
    """The videos under ``root`` in a stable order; ``source_format`` as in :func:`detect_format`."""
    chosen = detect_format(root) if source_format == "auto" else source_format
    readers = {"trackingnet": discover_trackingnet, "got10k": discover_got10k, "video-files": discover_video_files}
    if chosen not in readers:
        raise ValueError(f"unknown source format {chosen!r}; choose from auto, {', '.join(readers)}")
    return readers[chosen](root)


@dataclass
class DecodedFrame:
    """One frame read from a source: BGR ``image`` (None if unreadable) and its encoded bytes."""

    index: int
    source_path: str
    image: np.ndarray | None
    encoded: bytes | None  # the file's own JPEG bytes, when there is such a file
    problem: str = ""


class OpenedVideo:
    """A video ready to read: its frame count, per-frame boxes and the problems met so far.

    Frame folders list their frames; video files are decoded once to count the frames
    that really decode (a truncated file's header may promise more).
    """

    def __init__(self, source: VideoSource):
        self.source = source
        self.problems: list[str] = []
        self._frame_paths: list[Path] = []
        # Annotation line of each TrackingNet frame: frame n is line n+1; positions
        # differ from it where numbers are missing.
        self._frame_numbers: list[int] = []
        boxes = np.zeros((0, 4))
        if source.kind == "trackingnet":
            numbered = trackingnet_frame_paths(source.path)
            self._frame_paths = [path for _, path in numbered]
            self._frame_numbers = [number for number, _ in numbered]
            if source.annotation:
                boxes, self.problems = read_box_file(source.annotation)
            self.num_frames = len(self._frame_paths)
        elif source.kind == "got10k":
            # Frames run 00000001.jpg ... without a gap (read_sequence checks), so a
            # frame's position is its annotation line: no _frame_numbers needed.
            sequence = read_sequence(source.path, labels=False)
            self._frame_paths, boxes = list(sequence.frames), sequence.boxes
            self.num_frames = len(self._frame_paths)
        elif source.kind == "file":
            self.num_frames = self._count_decodable_frames()
        else:
            raise ValueError(f"unknown video kind {source.kind!r}")
        self.boxes = boxes
        self.bad_annotation_lines = sum("malformed box line" in p for p in self.problems)

    def _count_decodable_frames(self) -> int:
        capture = cv2.VideoCapture(self.source.path)
        if not capture.isOpened():
            self.problems.append(f"{self.source.path}: OpenCV cannot open this video file (corrupt or truncated?)")
            return 0
        count = 0
        try:
            while capture.grab():
                count += 1
        finally:
            capture.release()
        if count == 0:
            self.problems.append(f"{self.source.path}: no frame decodes (corrupt or truncated?)")
        return count

    def frame_number(self, index: int) -> int:
        """The frame's number in its source (file name or decode order) at position ``index``."""
        return self._frame_numbers[index] if self._frame_numbers else index

    def box(self, index: int) -> list[float] | None:
        """The annotated ``x, y, w, h`` of the frame at position ``index``, or None."""
        line = self.frame_number(index)
        if line < len(self.boxes) and not np.isnan(self.boxes[line]).any():
            return [float(v) for v in self.boxes[line]]
        return None

    def read(self, indices: list[int]) -> Iterator[DecodedFrame]:
        """Decode the frames at ``indices`` (positions 0..num_frames-1), in increasing order."""
        wanted = sorted(set(indices))
        if self.source.kind != "file":
            for index in wanted:
                path = self._frame_paths[index]
                try:
                    encoded = path.read_bytes()
                except OSError as error:
                    yield DecodedFrame(index, str(path), None, None, f"{path}: cannot read: {error}")
                    continue
                image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR) if encoded else None
                if image is None:
                    yield DecodedFrame(index, str(path), None, None, f"{path}: unreadable image (not a decodable JPEG)")
                    continue
                is_jpeg = encoded[:2] == b"\xff\xd8"
                yield DecodedFrame(index, str(path), image, encoded if is_jpeg else None)
            return
        capture = cv2.VideoCapture(self.source.path)
        try:
            position, targets = 0, iter(wanted)
            target = next(targets, None)
            while target is not None:
                if not capture.grab():
                    for missing in [target, *targets]:  # fewer frames decode than counted before
                        yield DecodedFrame(missing, self.source.path, None, None,
                                           f"{self.source.path}: frame {missing} does not decode")
                    return
                if position == target:
                    ok, image = capture.retrieve()
                    problem = "" if ok else f"{self.source.path}: frame {target} does not decode"
                    yield DecodedFrame(target, self.source.path, image if ok else None, None, problem)
                    target = next(targets, None)
                position += 1
        finally:
            capture.release()
