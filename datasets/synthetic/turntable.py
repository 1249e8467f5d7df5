"""A synthetic ALOI: procedurally generated objects photographed on a turntable.

The Amsterdam Library of Object Images (Geusebroek et al., 2005) is what the paper
uses for viewpoint, illumination-direction and illumination-colour invariance
(Section 3.2: "the dataset directly provides 1000 local trajectories for each of the
annotated properties"). This module writes the same on-disk layout, so the same reader
and the same RIS code run on the synthetic set and on the real one:

    root/png4/<obj>/<obj>_<cond>.png      obj = 1..N, no zero padding

with, per object, 108 images:

- viewpoint ``_r0`` ... ``_r355``: the turntable turned by 0, 5, ..., 355 degrees
  (camera c2, all five lamps, white light);
- illumination direction ``_l<L>c<C>``, L = 1..8, C = 1..3: the object at r0 lit by
  l1-l5 = one lamp each, at azimuths -90, -45, 0, +45, +90 degrees around the
  turntable (elevation 35 degrees); l6 = the left pair (l1 + l2); l7 = the right pair
  (l4 + l5); l8 = all five lamps; seen by camera c1, c2 or c3 at azimuth -15, 0, +15
  degrees (elevation 20 degrees);
- illumination colour ``_i<T>``, T in 110 ... 250: the lamp-voltage label, mapped
  linearly to a colour temperature from 2175 K (T = 110) to 3075 K (T = 250), all lamps,
  camera c2. The camera is white-balanced at 3075 K, so i250 looks neutral and lower
  voltages look redder, as in ALOI's colour series.

Images are square ``image_size`` x ``image_size`` 24-bit RGB PNG on a near-black
background with the object centred. Real ALOI at quarter resolution is 192 x 144; the
reader (:func:`datasets.aloi.read_aloi`) accepts any size, and so does the evaluation,
which resizes.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from datasets.cache import build_once, cache_key, cache_root
from datasets.synthetic.parallel import run_jobs
from datasets.synthetic.render import (
    Camera, Lighting, Pose, blackbody_rgb, compose, direction, rasterize, render, rotation_z, shade, write_png,
)
from datasets.synthetic.shapes import CATEGORIES, ObjectMesh, make_object

log = logging.getLogger(__name__)

# Bump when the generated images change, so cached copies are not reused.
GENERATOR_VERSION = 1

RESOLUTION_FOLDER = "png4"
VIEW_ANGLES: tuple[int, ...] = tuple(range(0, 360, 5))
LAMP_AZIMUTHS: tuple[float, ...] = (-90.0, -45.0, 0.0, 45.0, 90.0)
LAMP_ELEVATION = 35.0
# Which lamps (0-based indices into LAMP_AZIMUTHS) each illumination setting switches on.
LAMP_SETS: dict[int, tuple[int, ...]] = {1: (0,), 2: (1,), 3: (2,), 4: (3,), 5: (4,), 6: (0, 1), 7: (3, 4), 8: (0, 1, 2, 3, 4)}
CAMERA_AZIMUTHS: dict[int, float] = {1: -15.0, 2: 0.0, 3: 15.0}
CAMERA_ELEVATION = 20.0
COLOUR_VOLTAGES: tuple[int, ...] = (110, 120, 130, 140, 150, 160, 170, 180, 190, 210, 230, 250)
KELVIN_RANGE = (2175.0, 3075.0)
BACKGROUND = (6, 6, 8)  # near-black, like ALOI's dark background
_SUPERSAMPLE = 2
_SEED_STREAM = 1  # keeps these seeds apart from the object-centric generator's


@dataclass(frozen=True)
class AloiCondition:
    """One of ALOI's recording conditions, e.g. ``r90``, ``l3c2`` or ``i170``."""

    name: str
    turntable_deg: float
    camera: int
    lamps: tuple[int, ...]
    kelvin: float  # KELVIN_RANGE[1] is neutral (the white balance)


def voltage_to_kelvin(voltage: int) -> float:
    """ALOI lamp-voltage label -> colour temperature, linear from 110 -> 2175 K to 250 -> 3075 K."""
    lo_v, hi_v = COLOUR_VOLTAGES[0], COLOUR_VOLTAGES[-1]
    lo_k, hi_k = KELVIN_RANGE
    return lo_k + (voltage - lo_v) * (hi_k - lo_k) / (hi_v - lo_v)


def aloi_conditions() -> list[AloiCondition]:
    """All 108 conditions in the order they are written: 72 r, 24 l/c, 12 i."""
    all_lamps, white = LAMP_SETS[8], KELVIN_RANGE[1]
    conditions = [AloiCondition(f"r{a}", a, 2, all_lamps, white) for a in VIEW_ANGLES]
    conditions += [
        AloiCondition(f"l{lamp}c{cam}", 0, cam, LAMP_SETS[lamp], white)
        for lamp in sorted(LAMP_SETS) for cam in sorted(CAMERA_AZIMUTHS)
    ]
    conditions += [AloiCondition(f"i{v}", 0, 2, all_lamps, voltage_to_kelvin(v)) for v in COLOUR_VOLTAGES]
    return conditions


@dataclass(frozen=True)
class TurntableObject:
    """One object as placed on the turntable (its resting yaw and size)."""

    number: int
    mesh: ObjectMesh
    yaw_deg: float
    scale: float


def turntable_object(number: int, seed: int = 0) -> TurntableObject:
    """Object ``number`` (1-based) of the synthetic ALOI built from ``seed``.

    Categories cycle through :data:`CATEGORIES` so every shape is equally common;
    shape parameters, deformation, paint, resting yaw and size are random per object.
    """
    rng = np.random.default_rng([seed, _SEED_STREAM, number])
    category = CATEGORIES[(number - 1) % len(CATEGORIES)]
    mesh = make_object(category, rng)
    return TurntableObject(number, mesh, yaw_deg=float(rng.uniform(0, 360)), scale=float(rng.uniform(0.85, 1.1)))


def _scene(obj: TurntableObject, condition: AloiCondition) -> tuple[Pose, Camera, Lighting]:
    pose = Pose(rotation=rotation_z(obj.yaw_deg + condition.turntable_deg), scale=obj.scale)
    camera = Camera(azimuth_deg=CAMERA_AZIMUTHS[condition.camera], elevation_deg=CAMERA_ELEVATION)
    # Dimmer lamps when more are on, so l8 is brighter than a single lamp but not blown out.
    intensity = 0.9 / np.sqrt(len(condition.lamps))
    colour = blackbody_rgb(condition.kelvin, white_kelvin=KELVIN_RANGE[1])
    lighting = Lighting(
        directions=np.stack([direction(LAMP_AZIMUTHS[i], LAMP_ELEVATION) for i in condition.lamps]),
        colours=np.tile(colour * intensity, (len(condition.lamps), 1)),
        ambient=0.15 * colour,
    )
    return pose, camera, lighting


def render_condition(obj: TurntableObject, condition: AloiCondition, image_size: int) -> np.ndarray:
    """The RGB uint8 image of ``obj`` under ``condition``."""
    return render(obj.mesh, *_scene(obj, condition), image_size, BACKGROUND, _SUPERSAMPLE)


def _write_object(number: int, root: Path, image_size: int, seed: int) -> int:
    obj = turntable_object(number, seed)
    folder = root / RESOLUTION_FOLDER / str(number)
    folder.mkdir(parents=True, exist_ok=True)
    # Conditions that share turntable angle and camera differ only in light: rasterise
    # that view once and relight it (r0/c2 serves 21 images). Same pixels as render().
    views: dict[tuple[float, int], list[AloiCondition]] = {}
    for condition in aloi_conditions():
        views.setdefault((condition.turntable_deg, condition.camera), []).append(condition)
    for conditions in views.values():
        pose, camera, _ = _scene(obj, conditions[0])
        face_ids = rasterize(obj.mesh, pose, camera, image_size * _SUPERSAMPLE)
        for condition in conditions:
            lighting = _scene(obj, condition)[2]
            image = compose(face_ids, shade(obj.mesh, pose, lighting), image_size, BACKGROUND)
            write_png(folder / f"{number}_{condition.name}.png", image)
    return number


def write_aloi(root: Path, num_objects: int, image_size: int = 64, seed: int = 0, processes: int | None = None) -> Path:
    """Write a synthetic ALOI with ``num_objects`` objects under ``root``; return ``root``.

    ``root`` is the folder that will contain ``png4/`` (like the real tars' top level).
    Deterministic in ``seed``: the same arguments give byte-identical files whatever
    ``processes`` is (default: :func:`~datasets.synthetic.parallel.default_processes`).
    """
    if num_objects < 1:
        raise ValueError(f"num_objects must be >= 1, got {num_objects}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    root = Path(root)
    (root / RESOLUTION_FOLDER).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    job = partial(_write_object, root=root, image_size=image_size, seed=seed)
    run_jobs(job, list(range(1, num_objects + 1)), processes)
    log.info("wrote synthetic ALOI (%d objects, %d px) to %s in %.1f s",
             num_objects, image_size, root, time.perf_counter() - started)
    return root


def ensure_synthetic_aloi(
    num_objects: int = 200, image_size: int = 64, seed: int = 0, cache: str = "", processes: int | None = None
) -> Path:
    """The synthetic ALOI root (the folder containing ``png4/``), generated once into the cache.

    The cache folder name encodes every parameter and :data:`GENERATOR_VERSION`; safe
    to call from many processes at once (see :func:`datasets.cache.build_once`).
    """
    key = cache_key("synthetic-aloi", GENERATOR_VERSION, objects=num_objects, size=image_size, seed=seed)
    target = cache_root(cache) / key
    return build_once(target, lambda tmp: write_aloi(tmp, num_objects, image_size, seed, processes))
