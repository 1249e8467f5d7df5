"""A synthetic PASCAL3D+: rendered object instances at known viewpoints, in release 1.1's layout.

The paper's instance and instance+viewpoint sets (Sec. 3.2) crop PASCAL3D+ objects by
their boxes and group them by category and annotated viewpoint. This module writes
images and MATLAB annotations in the layout :mod:`datasets.pascal3d` reads::

    root/Annotations/<cls>_pascal/<id>.mat     root/Images/<cls>_pascal/<id>.jpg

For each category (shape categories of ``datasets.synthetic.shapes`` with a front and a
back, :data:`CATEGORY_ORDER`) and each of ``azimuths`` evenly spaced azimuths (0, 45,
..., 315 by default, each jittered by up to 8 degrees), ``instances_per_view`` new random
instances are rendered: every image shows a different instance, as every PASCAL3D+
photograph does. The camera looks from that azimuth and an elevation of 5-30 degrees
(one band of the reader's default bins), with the lamp fixed relative to the camera, over
a flat background of a random colour; the object is placed off-centre at random.
``truncated_per_category`` extra images per category show an object cut by the image
border, annotated ``truncated = 1`` (the reader leaves them out by default).

Each ``.mat`` holds ``record`` (a MATLAB struct, saved with ``scipy.io.savemat``):
``filename``, ``imgname``, ``size`` (width, height, depth), ``imgsize``, ``database``,
``segmented`` and ``objects``, a 1 x K struct array with ``class``, ``bbox``
([x1 y1 x2 y2], 1-based inclusive), ``truncated``, ``occluded``, ``difficult``,
``cad_index`` and ``viewpoint`` (``azimuth``, ``elevation``, ``theta``, ``distance``,
``focal``, ``px``, ``py``, ``viewport``, ``azimuth_coarse``, ``elevation_coarse``).
Images are ``image_size`` x ``image_size`` JPEG.
"""
from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from datasets.cache import build_once, cache_key, cache_root
from datasets.synthetic.parallel import run_jobs
from datasets.synthetic.render import (
    Camera, Lighting, Pose, blackbody_rgb, compose, direction, rasterize, rotation_z, shade,
)
from datasets.synthetic.shapes import make_object

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
SUBSET = "pascal"
# Categories whose silhouette and paint change as they turn: viewpoint is visible.
CATEGORY_ORDER: tuple[str, ...] = ("chair", "table", "mug", "dumbbell", "lamp", "box", "mushroom", "torus")
ELEVATION_RANGE = (5.0, 30.0)
AZIMUTH_JITTER = 8.0
_SEED_STREAM = 4  # keeps these seeds apart from the other generators'
_SUPERSAMPLE = 2
_JPEG_QUALITY = 95
_OBJECT_FIELDS = ("class", "bbox", "truncated", "occluded", "difficult", "cad_index", "viewpoint")
_VIEWPOINT_FIELDS = ("azimuth", "elevation", "theta", "distance", "focal", "px", "py", "viewport",
                     "azimuth_coarse", "elevation_coarse")


def categories(count: int) -> tuple[str, ...]:
    if not 1 <= count <= len(CATEGORY_ORDER):
        raise ValueError(f"categories must be from 1 to {len(CATEGORY_ORDER)}, got {count}")
    return CATEGORY_ORDER[:count]


def _struct(fields: tuple[str, ...], values: list[dict]) -> np.ndarray:
    """A 1 x K MATLAB struct array (savemat writes a numpy record array of objects as one)."""
    array = np.empty((1, len(values)), dtype=[(name, object) for name in fields])
    for k, value in enumerate(values):
        for name in fields:
            array[0, k][name] = value[name]
    return array


def _render(category: str, rng: np.random.Generator, azimuth: float, elevation: float, size: int,
            truncated: bool) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One new instance seen from ``azimuth``/``elevation``: the RGB image and its 1-based inclusive box."""
    mesh = make_object(category, rng)
    camera = Camera(azimuth_deg=0.0, elevation_deg=elevation)
    right, up, _ = camera.axes()
    shift = rng.uniform(0.9, 1.1) * (1 if rng.random() < 0.5 else -1) if truncated else rng.uniform(-0.35, 0.35)
    offset = shift * right + rng.uniform(-0.2, 0.2) * up
    # Seen from azimuth a = the object turned by -a in front of a fixed camera and lamp.
    pose = Pose(rotation=rotation_z(-azimuth), scale=rng.uniform(0.65, 0.9), offset=offset)
    kelvin = rng.uniform(4000, 7000)
    lighting = Lighting(directions=direction(-35.0, 40.0)[None], colours=blackbody_rgb(kelvin)[None] * 0.9,
                        ambient=0.2 * blackbody_rgb(kelvin))
    background = tuple(int(v) for v in rng.integers(20, 236, 3))
    face_ids = rasterize(mesh, pose, camera, size * _SUPERSAMPLE)
    image = compose(face_ids, shade(mesh, pose, lighting), size, background)
    coverage = cv2.resize((face_ids >= 0).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    rows, cols = np.nonzero(coverage > 0.5)
    return image, (int(cols.min()) + 1, int(rows.min()) + 1, int(cols.max()) + 1, int(rows.max()) + 1)


def _write_category(job: tuple[int, str], root: Path, azimuths: int, instances_per_view: int,
                    truncated_per_category: int, image_size: int, seed: int) -> int:
    category_index, category = job
    annotations = root / "Annotations" / f"{category}_{SUBSET}"
    images = root / "Images" / f"{category}_{SUBSET}"
    annotations.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    views = [(float(a), False) for a in np.arange(azimuths) * 360.0 / azimuths for _ in range(instances_per_view)]
    views += [(float(a), True) for a in np.arange(truncated_per_category) * 360.0 / max(1, truncated_per_category)]
    for number, (azimuth_centre, truncated) in enumerate(views, start=1):
        rng = np.random.default_rng([seed, _SEED_STREAM, category_index, number])
        azimuth = float((azimuth_centre + rng.uniform(-AZIMUTH_JITTER, AZIMUTH_JITTER)) % 360.0)
        elevation = float(rng.uniform(*ELEVATION_RANGE))
        image, bbox = _render(category, rng, azimuth, elevation, image_size, truncated)
        image_id = f"{category}_{number:05d}"
        if not cv2.imwrite(str(images / f"{image_id}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]):
            raise OSError(f"could not write {images / f'{image_id}.jpg'}")
        viewpoint = _struct(_VIEWPOINT_FIELDS, [{
            "azimuth": azimuth, "elevation": elevation, "theta": 0.0, "distance": Camera().distance,
            "focal": 1.0, "px": image_size / 2, "py": image_size / 2, "viewport": float(image_size),
            "azimuth_coarse": float(round(azimuth / 15.0) * 15 % 360), "elevation_coarse": float(round(elevation)),
        }])
        objects = _struct(_OBJECT_FIELDS, [{
            "class": category, "bbox": np.asarray([bbox], dtype=np.float64), "truncated": int(truncated),
            "occluded": 0, "difficult": 0, "cad_index": 1, "viewpoint": viewpoint,
        }])
        size = _struct(("width", "height", "depth"), [{"width": image_size, "height": image_size, "depth": 3}])
        record = {
            "filename": f"{image_id}.jpg", "imgname": f"{category}_{SUBSET}/{image_id}.jpg", "size": size,
            "imgsize": np.asarray([[image_size, image_size, 3]], dtype=np.float64), "database": "synthetic",
            "segmented": 0, "objects": objects,
        }
        scipy.io.savemat(annotations / f"{image_id}.mat", {"record": record})
    return len(views)


def write_pascal3d(root: Path, num_categories: int = 4, azimuths: int = 8, instances_per_view: int = 3,
                   truncated_per_category: int = 2, image_size: int = 64, seed: int = 0,
                   processes: int | None = None) -> Path:
    """Write ``root/Annotations/`` and ``root/Images/``; return ``root``. Deterministic in ``seed``."""
    chosen = categories(num_categories)
    if azimuths < 1 or instances_per_view < 1 or truncated_per_category < 0:
        raise ValueError(f"need azimuths >= 1, instances_per_view >= 1 and truncated_per_category >= 0, "
                         f"got {azimuths}, {instances_per_view}, {truncated_per_category}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    root = Path(root)
    started = time.perf_counter()
    run_jobs(partial(_write_category, root=root, azimuths=azimuths, instances_per_view=instances_per_view,
                     truncated_per_category=truncated_per_category, image_size=image_size, seed=seed),
             list(enumerate(chosen)), processes)
    log.info("wrote synthetic PASCAL3D+ (%d categories x %d azimuths x %d instances, %d px) to %s in %.1f s",
             num_categories, azimuths, instances_per_view, image_size, root, time.perf_counter() - started)
    return root


def ensure_synthetic_pascal3d(num_categories: int = 4, azimuths: int = 8, instances_per_view: int = 3,
                              truncated_per_category: int = 2, image_size: int = 64, seed: int = 0,
                              cache: str = "", processes: int | None = None) -> Path:
    """The synthetic PASCAL3D+ root (containing ``Annotations/`` and ``Images/``), generated once."""
    categories(num_categories)  # fail before taking the lock
    key = cache_key("synthetic-pascal3d", GENERATOR_VERSION, categories=num_categories, azimuths=azimuths,
                    instances=instances_per_view, truncated=truncated_per_category, size=image_size, seed=seed)
    return build_once(cache_root(cache) / key, lambda tmp: write_pascal3d(
        tmp, num_categories, azimuths, instances_per_view, truncated_per_category, image_size, seed, processes))
