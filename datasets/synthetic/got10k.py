"""A synthetic GOT-10k: rendered objects passing behind an occluder, in GOT-10k's exact layout.

The paper's occlusion set (Sec. 3.2) crops the annotated target from GOT-10k frames, one
frame per level of occlusion. This module writes sequences whose occlusion is known
exactly, in the layout :mod:`datasets.got10k` reads (its file and folder names come from there)::

    root/train/list.txt
    root/train/GOT-10k_Train_000001/00000001.jpg ...  groundtruth.txt  absence.label
                                   cover.label  cut_by_image.label  meta_info.ini

Each sequence shows one procedural object (``datasets.synthetic.shapes``, rendered once
by ``datasets.synthetic.render`` in a random pose and light) sliding left to right in
front of a cluttered background, behind a flat magenta bar (:data:`OCCLUDER_RGB`) of
random width standing in the middle of the frame. Only the occlusion changes along a
sequence: the object's pose, light and scale are fixed, and the crop removes its
position. Per frame:

- ``groundtruth.txt``: the object's whole (amodal) box ``x,y,w,h``, occluded part
  included, so the crop shows how much of the object the bar hides;
- ``cover.label``: GOT-10k's visible-ratio level (:func:`datasets.got10k.cover_level`)
  of the exact fraction of the object's pixels the bar leaves visible;
- ``absence.label``: 1 when the bar hides the object completely (level 0);
- ``cut_by_image.label``: 0 (the object stays inside the frame);
- ``meta_info.ini``: GOT-10k's keys in GOT-10k's order, ``object_class`` = the shape.

Frames are ``3 * image_size`` wide and ``image_size`` high, JPEG; the object is rendered
at ``image_size`` pixels (its box is about 60-90 % of that).
"""
from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from datasets.cache import build_once, cache_key, cache_root
from datasets.got10k import (
    ABSENCE_LABEL, COVER_LABEL, CUT_BY_IMAGE_LABEL, GROUNDTRUTH, LIST_FILE, META_INFO, META_SECTION, cover_level,
    frame_name, sequence_name,
)
from datasets.synthetic.objects import clutter_background
from datasets.synthetic.parallel import run_jobs
from datasets.synthetic.render import (
    Camera, Lighting, Pose, blackbody_rgb, compose, direction, rasterize, rotation_about, rotation_z, shade,
)
from datasets.synthetic.shapes import CATEGORIES, make_object

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
SPLIT = "train"
OCCLUDER_RGB = (230, 20, 230)  # flat magenta: no shaded object paint comes this close
_SEED_STREAM = 3  # keeps these seeds apart from the other generators'
_SUPERSAMPLE = 2
_JPEG_QUALITY = 95


def _sprite(category: str, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One random instance of ``category`` rendered at ``size``: RGB uint8 and coverage in [0, 1]."""
    mesh = make_object(category, rng)
    tilt = rotation_about(np.append(rng.normal(size=2), 0.0), float(np.clip(rng.normal(0, 10), -20, 20)))
    pose = Pose(rotation=tilt @ rotation_z(rng.uniform(0, 360)), scale=rng.uniform(0.8, 1.0))
    camera = Camera(azimuth_deg=0.0, elevation_deg=rng.uniform(5, 35))
    kelvin = rng.uniform(3500, 7500)
    lighting = Lighting(directions=direction(rng.uniform(-90, 90), rng.uniform(20, 70))[None],
                        colours=blackbody_rgb(kelvin)[None] * 0.9, ambient=0.2 * blackbody_rgb(kelvin))
    face_ids = rasterize(mesh, pose, camera, size * _SUPERSAMPLE)
    rgb = compose(face_ids, shade(mesh, pose, lighting), size, (0, 0, 0))
    coverage = cv2.resize((face_ids >= 0).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return rgb, coverage


def _write_sequence(number: int, split_dir: Path, frames: int, image_size: int, seed: int) -> int:
    rng = np.random.default_rng([seed, _SEED_STREAM, number])
    category = CATEGORIES[(number - 1) % len(CATEGORIES)]
    sprite, coverage = _sprite(category, rng, image_size)
    rows, cols = np.nonzero(coverage > 0.5)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    sprite, coverage = sprite[top:bottom, left:right], coverage[top:bottom, left:right]
    box_h, box_w = coverage.shape
    height, width = image_size, 3 * image_size
    background = clutter_background(rng, width)[:height]
    bar_w = int(round(box_w * rng.uniform(0.5, 1.15)))
    bar_left = (width - bar_w) // 2
    y = int(rng.integers(0, height - box_h + 1))
    # From fully left of the bar to fully right of it, evenly over the frames.
    xs = np.round(np.linspace(1, width - box_w - 1, frames)).astype(int)

    folder = split_dir / sequence_name(SPLIT, number)
    folder.mkdir(parents=True)
    boxes, absent, cover = [], [], []
    object_pixels = coverage > 0.5
    for index, x in enumerate(xs.tolist()):
        frame = background.astype(np.float32)
        alpha = coverage[..., None]
        region = frame[y:y + box_h, x:x + box_w]
        frame[y:y + box_h, x:x + box_w] = alpha * sprite + (1 - alpha) * region
        frame[:, bar_left:bar_left + bar_w] = OCCLUDER_RGB
        hidden = np.zeros_like(object_pixels)
        lo, hi = max(bar_left - x, 0), min(bar_left + bar_w - x, box_w)
        if hi > lo:
            hidden[:, lo:hi] = True
        ratio = float((object_pixels & ~hidden).sum() / object_pixels.sum())
        level = cover_level(ratio)
        boxes.append(f"{x:.4f},{y:.4f},{box_w:.4f},{box_h:.4f}")
        cover.append(level)
        absent.append(int(level == 0))
        image = cv2.cvtColor(np.clip(frame + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(folder / frame_name(index)), image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]):
            raise OSError(f"could not write {folder / frame_name(index)}")
    (folder / GROUNDTRUTH).write_text("\n".join(boxes) + "\n")
    (folder / ABSENCE_LABEL).write_text("".join(f"{a}\n" for a in absent))
    (folder / COVER_LABEL).write_text("".join(f"{c}\n" for c in cover))
    (folder / CUT_BY_IMAGE_LABEL).write_text("0\n" * frames)
    (folder / META_INFO).write_text(
        f"[{META_SECTION}]\n"
        f"url: synthetic://got10k/{seed}/{number}\nbegin: 00:00:00\nend: 00:00:{frames // 10:02d}\n"
        f"anno_fps: 10Hz\nobject_class: {category}\nmotion_class: sliding\nmajor_class: shape\n"
        f"root_class: object\nmotion_adverb: steadily\nresolution: ({width}, {height})\n"
    )
    return number


def write_got10k(root: Path, num_sequences: int = 32, frames: int = 16, image_size: int = 64, seed: int = 0,
                 processes: int | None = None) -> Path:
    """Write ``root/train/`` with ``num_sequences`` sequences of ``frames`` frames; return ``root``.

    Deterministic in ``seed`` whatever ``processes`` is.
    """
    if num_sequences < 1:
        raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
    if frames < 4:
        raise ValueError(f"frames must be >= 4 (a pass behind the bar needs a few), got {frames}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    root = Path(root)
    split_dir = root / SPLIT
    split_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    numbers = list(range(1, num_sequences + 1))
    run_jobs(partial(_write_sequence, split_dir=split_dir, frames=frames, image_size=image_size, seed=seed),
             numbers, processes)
    (split_dir / LIST_FILE).write_text("".join(f"{sequence_name(SPLIT, n)}\n" for n in numbers))
    log.info("wrote synthetic GOT-10k (%d sequences x %d frames, %d px) to %s in %.1f s",
             num_sequences, frames, image_size, root, time.perf_counter() - started)
    return root


def ensure_synthetic_got10k(num_sequences: int = 32, frames: int = 16, image_size: int = 64, seed: int = 0,
                            cache: str = "", processes: int | None = None) -> Path:
    """The synthetic GOT-10k root (the folder containing ``train/``), generated once into the cache."""
    key = cache_key("synthetic-got10k", GENERATOR_VERSION, sequences=num_sequences, frames=frames,
                    size=image_size, seed=seed)
    return build_once(cache_root(cache) / key,
                      lambda tmp: write_got10k(tmp, num_sequences, frames, image_size, seed, processes))
