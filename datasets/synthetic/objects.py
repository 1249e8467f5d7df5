"""A synthetic object-centric image set in ImageNet's class-folder layout.

The paper's dataset-bias study (Section 4) contrasts object-centric pretraining data
(ImageNet: one dominant, centred object per image) with scene-centric data. This set is
the object-centric side at laptop scale: one object per image from the same procedural
shapes as the synthetic ALOI, in a random pose (any yaw, tilted up to 45 degrees, camera
elevation -5 to 50 degrees), random size and offset, lit by one to three lamps of random
direction and colour temperature, over a cluttered 2-D background (gradient, rectangles,
ellipses, lines, noise), or, with ``background="plain"``, over ALOI's near-black
background: the same objects, poses and lamps (the clutter is still drawn from the
random stream, then not used), so the two sets differ only in the background.
Layout (``datasets.image_folder`` reads it):

    root/train/<class>/<class>_<i>.png
    root/val/<class>/<class>_<i>.png

``<class>`` is the shape category; sorted class names give the label indices. Each
object instance is photographed :data:`IMAGES_PER_INSTANCE` times; validation images
show new instances (other seeds) of the same categories, so a linear probe measures
category recognition, not instance memory.
"""
from __future__ import annotations

import colorsys
import logging
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from datasets.cache import build_once, cache_key, cache_root
from datasets.synthetic.parallel import run_jobs
from datasets.synthetic.render import Camera, Lighting, Pose, blackbody_rgb, direction, render, rotation_about, rotation_z, write_png
from datasets.synthetic.shapes import CATEGORIES, ObjectMesh, make_object

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
IMAGES_PER_INSTANCE = 4
SPLITS = ("train", "val")
# "clutter": a new random scene behind every photograph, which a contrastive model can
# tell images apart by (BENCHMARKS.md, "Does pretraining learn?"); "plain": none.
BACKGROUNDS = ("clutter", "plain")
PLAIN_BACKGROUND = (6, 6, 8)  # the synthetic ALOI's near-black background
_SEED_STREAM = 2  # keeps these seeds apart from the turntable generator's
_SUPERSAMPLE = 2


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.15, 0.95))
    return np.asarray(rgb) * 255.0


def clutter_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random cluttered RGB uint8 ``size`` x ``size`` background.

    A two-colour gradient, 3-9 filled rectangles, ellipses and thick lines (some
    translucent), low-frequency blotches and pixel noise, slightly blurred so the
    (sharp) object stands in front of it.
    """
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None] + 1.0) / 2
    start, end = _random_colour(rng), _random_colour(rng)
    image = cv2.merge([(a + (b - a) * t).astype(np.uint8) for a, b in zip(start, end)])

    for _ in range(int(rng.integers(3, 10))):
        layer = image.copy()
        colour = _random_colour(rng).tolist()
        kind = rng.integers(0, 3)
        centre = rng.uniform(0, size, 2)
        if kind == 0:  # rotated rectangle
            box = cv2.boxPoints(((*centre,), tuple(rng.uniform(0.1, 0.6, 2) * size), rng.uniform(0, 180)))
            cv2.fillConvexPoly(layer, np.round(box).astype(np.int32), colour, cv2.LINE_AA)
        elif kind == 1:  # ellipse
            axes = tuple(int(a) for a in rng.uniform(0.05, 0.3, 2) * size)
            cv2.ellipse(layer, tuple(int(c) for c in centre), axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA)
        else:  # thick line
            end_point = tuple(int(c) for c in rng.uniform(0, size, 2))
            cv2.line(layer, tuple(int(c) for c in centre), end_point, colour, int(rng.integers(1, max(2, size // 12))), cv2.LINE_AA)
        alpha = rng.uniform(0.5, 1.0)  # some shapes are translucent
        image = cv2.addWeighted(layer, alpha, image, 1 - alpha, 0.0)

    # Texture at half resolution (cheaper, and the output is shrunk by 2 anyway).
    half = max(1, size // 2)
    blotches = cv2.resize(rng.normal(0, 1, (4, 4, 3)).astype(np.float32), (half, half), interpolation=cv2.INTER_LINEAR)
    texture = blotches * rng.uniform(0, 25) + rng.standard_normal((half, half, 3), np.float32) * rng.uniform(1, 10)
    texture = cv2.resize(texture, (size, size), interpolation=cv2.INTER_LINEAR)
    image = cv2.GaussianBlur(image + texture, (0, 0), rng.uniform(0.5, 1.5))
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _random_lighting(rng: np.random.Generator) -> Lighting:
    count = int(rng.integers(1, 4))
    kelvins = rng.uniform(2500, 9000, count)
    intensity = rng.uniform(0.7, 1.2) * 0.9 / np.sqrt(count)
    return Lighting(
        directions=np.stack([direction(rng.uniform(-120, 120), rng.uniform(10, 80)) for _ in range(count)]),
        colours=np.stack([blackbody_rgb(k) * intensity for k in kelvins]),
        ambient=rng.uniform(0.15, 0.3) * blackbody_rgb(float(kelvins.mean())),
    )


def photograph_instance(category: str, rng: np.random.Generator, images: int, image_size: int,
                        background: str = "clutter", repaint: Callable[[ObjectMesh], ObjectMesh] | None = None,
                        ) -> list[np.ndarray]:
    """``images`` photographs (RGB uint8) of one new random instance of ``category``;
    ``repaint`` (if given) changes the instance's paint before it is photographed."""
    mesh = make_object(category, rng)
    if repaint is not None:
        mesh = repaint(mesh)
    photos = []
    for _ in range(images):
        tilt = rotation_about(np.append(rng.normal(size=2), 0.0), float(np.clip(rng.normal(0, 20), -45, 45)))
        camera = Camera(azimuth_deg=0.0, elevation_deg=rng.uniform(-5, 50))
        right, up, _ = camera.axes()
        offset = (rng.uniform(-0.3, 0.3) * right + rng.uniform(-0.3, 0.3) * up)
        pose = Pose(rotation=tilt @ rotation_z(rng.uniform(0, 360)), scale=rng.uniform(0.55, 1.0), offset=offset)
        # Drawn in both modes, so that the random stream, and with it every object, pose
        # and lamp, is the same whatever the background.
        clutter = clutter_background(rng, image_size * _SUPERSAMPLE)
        behind = clutter if background == "clutter" else PLAIN_BACKGROUND
        photos.append(render(mesh, pose, camera, _random_lighting(rng), image_size, behind, _SUPERSAMPLE))
    return photos


def instance_rng(seed: int, split: str, category: str, instance: int) -> np.random.Generator:
    """The generator that builds and photographs one instance (independent of job order)."""
    return np.random.default_rng([seed, _SEED_STREAM, SPLITS.index(split), CATEGORIES.index(category), instance])


def _write_instance(job: tuple[str, str, int, int], root: Path, image_size: int, seed: int, background: str) -> int:
    split, category, instance, count = job
    rng = instance_rng(seed, split, category, instance)
    folder = root / split / category
    folder.mkdir(parents=True, exist_ok=True)
    first = instance * IMAGES_PER_INSTANCE
    for k, photo in enumerate(photograph_instance(category, rng, count, image_size, background)):
        write_png(folder / f"{category}_{first + k:04d}.png", photo)
    return count


def check_background(background: str) -> None:
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {background!r}")


def object_classes(num_classes: int) -> list[str]:
    """The ``num_classes`` categories a set uses, in label order (sorted names)."""
    if not 1 <= num_classes <= len(CATEGORIES):
        raise ValueError(f"num_classes must be between 1 and {len(CATEGORIES)} (the shape categories), got {num_classes}")
    return sorted(CATEGORIES[:num_classes])


def write_object_folders(
    root: Path,
    num_classes: int = 8,
    train_per_class: int = 200,
    val_per_class: int = 50,
    image_size: int = 64,
    seed: int = 0,
    processes: int | None = None,
    background: str = "clutter",
) -> Path:
    """Write ``root/train/<class>/`` and ``root/val/<class>/``; return ``root``.

    Classes are the first ``num_classes`` of :data:`CATEGORIES`; ``background`` is one
    of :data:`BACKGROUNDS`. Deterministic in ``seed`` whatever ``processes`` is.
    """
    classes = object_classes(num_classes)
    check_background(background)
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError(f"need at least one image per class and split, got {train_per_class} and {val_per_class}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    root = Path(root)
    jobs = []
    for split, per_class in zip(SPLITS, (train_per_class, val_per_class)):
        for category in classes:
            (root / split / category).mkdir(parents=True, exist_ok=True)
            for instance in range(math.ceil(per_class / IMAGES_PER_INSTANCE)):
                count = min(IMAGES_PER_INSTANCE, per_class - instance * IMAGES_PER_INSTANCE)
                jobs.append((split, category, instance, count))
    started = time.perf_counter()
    run_jobs(partial(_write_instance, root=root, image_size=image_size, seed=seed, background=background),
             jobs, processes)
    log.info("wrote synthetic object folders (%d classes, %d + %d per class, %s background) to %s in %.1f s",
             num_classes, train_per_class, val_per_class, background, root, time.perf_counter() - started)
    return root


def ensure_synthetic_objects(
    num_classes: int = 8,
    train_per_class: int = 200,
    val_per_class: int = 50,
    image_size: int = 64,
    seed: int = 0,
    cache: str = "",
    processes: int | None = None,
    background: str = "clutter",
) -> Path:
    """The synthetic object-centric root (containing ``train/`` and ``val/``), generated once.

    The cache folder name encodes every parameter and :data:`GENERATOR_VERSION`; safe
    to call from many processes at once (see :func:`datasets.cache.build_once`).
    """
    object_classes(num_classes)  # fail before taking the lock
    check_background(background)
    # The clutter sets keep the folder names they had before the background option.
    extra = {} if background == "clutter" else {"background": background}
    key = cache_key(
        "synthetic-objects", GENERATOR_VERSION,
        classes=num_classes, train=train_per_class, val=val_per_class, size=image_size, seed=seed, **extra,
    )
    target = cache_root(cache) / key
    return build_once(target, lambda tmp: write_object_folders(
        tmp, num_classes, train_per_class, val_per_class, image_size, seed, processes, background))
