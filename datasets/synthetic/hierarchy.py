"""A synthetic object set with a real three-level label hierarchy, in iNat21's layout.

Cole et al. 2022 (Sec. 4.4, Fig. 6) probe one representation at every level of iNat21's
taxonomy, kingdom to species. This set has the same structure at laptop scale:

- level 0, ``kingdom``: a shape family (:data:`FAMILIES`: round, angular, furniture, vessel);
- level 1, ``genus``: the shape (two per family, from datasets.synthetic.shapes);
- level 2, ``species``: a colour variant of the shape (:data:`VARIANTS`): the instance's own
  paint pattern kept as shading, tinted with the variant's hue.

The ranks between (phylum .. family) repeat the family, so the iNat21 reader sees three
distinct levels. Images are photographed exactly like ``synthetic-objects`` (random pose,
lamps, clutter or plain background; datasets.synthetic.objects.photograph_instance), a new
instance for every :data:`~datasets.synthetic.objects.IMAGES_PER_INSTANCE` photographs, so
validation images show unseen instances. Written in iNat21's layout (datasets.inat21):

    root/train.json  root/val.json
    root/train/<00000_round_round_round_round_round_sphere_red>/<i>.png   (image_dir_name)

which is also an ImageNet-style class-folder root whose classes are the species.

Colour is the fine level's only cue, and MoCo v2's and SimCLR's augmentations jitter hue
and drop colour: the set asks the question of Cole et al.'s Sec. 4.4 with the confound
they discuss ("are the augmentations destructive?") built in, not ruled out.
"""
from __future__ import annotations

import colorsys
import dataclasses
import logging
import math
import time
from functools import partial
from pathlib import Path

import numpy as np

from datasets.cache import build_once, cache_key, cache_root
from datasets.inat21 import TAXON_FIELDS, image_dir_name, write_inat21_split
from datasets.synthetic.parallel import run_jobs
from datasets.synthetic.objects import IMAGES_PER_INSTANCE, SPLITS, check_background, photograph_instance
from datasets.synthetic.render import write_png
from datasets.synthetic.shapes import ObjectMesh

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("round", ("sphere", "torus")),
    ("angular", ("box", "cone")),
    ("furniture", ("table", "chair")),
    ("vessel", ("mug", "bottle")),
)
# Hues a third of the circle apart, then between: the first three variants are far apart.
VARIANTS: tuple[tuple[str, float], ...] = (("red", 0.0), ("green", 1 / 3), ("blue", 2 / 3),
                                           ("yellow", 1 / 6), ("cyan", 1 / 2), ("magenta", 5 / 6))
_SEED_STREAM = 5  # keeps these seeds apart from the other generators'


def hierarchy_taxa(families: int, variants: int) -> list[dict]:
    """The species (iNat21 taxon fields), in label order: family, shape, variant."""
    if not 2 <= families <= len(FAMILIES):
        raise ValueError(f"families must be from 2 to {len(FAMILIES)}, got {families}")
    if not 2 <= variants <= len(VARIANTS):
        raise ValueError(f"variants must be from 2 to {len(VARIANTS)}, got {variants}")
    taxa = []
    for family, shapes in FAMILIES[:families]:
        for shape in shapes:
            for variant, _ in VARIANTS[:variants]:
                taxa.append({**{f: family for f in TAXON_FIELDS[:5]}, "genus": shape, "specific_epithet": variant})
    return taxa


def tinted(mesh: ObjectMesh, hue: float) -> ObjectMesh:
    """`mesh` with its paint's brightness kept as shading and its colour set to `hue`."""
    brightness = mesh.albedo.mean(axis=1, keepdims=True)
    shade = 0.45 + 0.55 * brightness / max(float(brightness.max()), 1e-6)
    colour = np.asarray(colorsys.hsv_to_rgb(hue, 0.85, 0.95), np.float32)
    return dataclasses.replace(mesh, albedo=np.clip(shade * colour, 0.0, 1.0).astype(np.float32))


def _write_instance(job: tuple[str, int, int, int], root: Path, taxa: list[dict], image_size: int, seed: int,
                    background: str) -> list[tuple[str, int, int, int]]:
    split, species, instance, count = job
    taxon = taxa[species]
    hue = dict(VARIANTS)[taxon["specific_epithet"]]
    rng = np.random.default_rng([seed, _SEED_STREAM, SPLITS.index(split), species, instance])
    folder = f"{split}/{image_dir_name(species, taxon)}"
    (root / folder).mkdir(parents=True, exist_ok=True)
    files = []
    photos = photograph_instance(taxon["genus"], rng, count, image_size, background, partial(tinted, hue=hue))
    for k, photo in enumerate(photos):
        name = f"{folder}/{instance * IMAGES_PER_INSTANCE + k:04d}.png"
        write_png(root / name, photo)
        files.append((name, species, image_size, image_size))
    return files


def write_hierarchy(root: Path, families: int = 4, variants: int = 3, train_per_species: int = 40,
                    val_per_species: int = 12, image_size: int = 64, seed: int = 0, processes: int | None = None,
                    background: str = "clutter") -> Path:
    """Write the set under `root` in iNat21's layout; deterministic in `seed` whatever
    `processes` is."""
    taxa = hierarchy_taxa(families, variants)
    check_background(background)
    if train_per_species < 1 or val_per_species < 1:
        raise ValueError(f"need at least one image per species and split, got {train_per_species} and {val_per_species}")
    root = Path(root)
    started = time.perf_counter()
    for split, per_species in zip(SPLITS, (train_per_species, val_per_species)):
        jobs = [(split, species, instance, min(IMAGES_PER_INSTANCE, per_species - instance * IMAGES_PER_INSTANCE))
                for species in range(len(taxa)) for instance in range(math.ceil(per_species / IMAGES_PER_INSTANCE))]
        written = run_jobs(partial(_write_instance, root=root, taxa=taxa, image_size=image_size, seed=seed,
                                   background=background), jobs, processes)
        write_inat21_split(root, split, taxa, [entry for files in written for entry in files])
    log.info("wrote the synthetic hierarchy (%d species, %d + %d each) to %s in %.1f s",
             len(taxa), train_per_species, val_per_species, root, time.perf_counter() - started)
    return root


def ensure_synthetic_hierarchy(families: int = 4, variants: int = 3, train_per_species: int = 40,
                               val_per_species: int = 12, image_size: int = 64, seed: int = 0, cache: str = "",
                               processes: int | None = None, background: str = "clutter") -> Path:
    """The set's root, generated once per cache folder (datasets.cache.build_once)."""
    hierarchy_taxa(families, variants)  # fail before taking the lock
    check_background(background)
    key = cache_key("synthetic-hierarchy", GENERATOR_VERSION, families=families, variants=variants,
                    train=train_per_species, val=val_per_species, size=image_size, seed=seed, background=background)
    return build_once(cache_root(cache) / key, lambda tmp: write_hierarchy(
        tmp, families, variants, train_per_species, val_per_species, image_size, seed, processes, background))
