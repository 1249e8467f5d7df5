"""Generated data in the real layouts, the embedded defaults (no dataset root configured).

The synthetic sets are fixed datasets, like ImageNet: generated from the generators'
own default seed, not from the trial's ``seed``, so trials that differ only in their
seed train and evaluate on the same images. They are built once per cache folder
(``data_cache``) at the trial's ``image_size``, safely under concurrent callers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.sources.base import ALOI, DATA_SOURCES, GOT10K, IMAGE_FOLDER, PASCAL3D, DataSource


@DATA_SOURCES.register
@dataclass(frozen=True)
class SyntheticObjects(DataSource):
    """Object-centric class folders (datasets.synthetic.objects), ImageNet's layout."""

    name: ClassVar[str] = "synthetic-objects"
    layout: ClassVar[str] = IMAGE_FOLDER
    classes: int = 8
    train_per_class: int = 150
    val_per_class: int = 50
    background: str = "clutter"

    def problems(self, trial: Any) -> list[str]:
        from datasets.synthetic.objects import BACKGROUNDS

        out = [f"{k}={getattr(self, k)} must be at least 1"
               for k in ("classes", "train_per_class", "val_per_class") if getattr(self, k) < 1]
        if self.background not in BACKGROUNDS:
            out.append(f"background={self.background!r} is not one of {', '.join(BACKGROUNDS)}")
        return out

    def num_images(self, split: str) -> int:
        return self.classes * (self.train_per_class if split == "train" else self.val_per_class)

    def resolve(self, trial: Any) -> Path:
        from datasets.synthetic.objects import ensure_synthetic_objects

        return ensure_synthetic_objects(
            num_classes=self.classes, train_per_class=self.train_per_class,
            val_per_class=self.val_per_class, image_size=int(trial.image_size),
            cache=str(trial.data_cache), background=self.background,
        )


@DATA_SOURCES.register
@dataclass(frozen=True)
class SyntheticAloi(DataSource):
    """Turntable objects photographed under ALOI's conditions (datasets.synthetic.turntable)."""

    name: ClassVar[str] = "synthetic-aloi"
    layout: ClassVar[str] = ALOI
    objects: int = 200

    def problems(self, trial: Any) -> list[str]:
        return [] if self.objects >= 1 else [f"objects={self.objects} must be at least 1"]

    def resolve(self, trial: Any) -> Path:
        from datasets.synthetic.turntable import ensure_synthetic_aloi

        return ensure_synthetic_aloi(num_objects=self.objects, image_size=int(trial.image_size),
                                     cache=str(trial.data_cache))


@DATA_SOURCES.register
@dataclass(frozen=True)
class SyntheticGot10k(DataSource):
    """Objects sliding behind an occluder, in GOT-10k's layout (datasets.synthetic.got10k)."""

    name: ClassVar[str] = "synthetic-got10k"
    layout: ClassVar[str] = GOT10K
    sequences: int = 32
    frames: int = 16

    def problems(self, trial: Any) -> list[str]:
        out = [] if self.sequences >= 2 else [f"sequences={self.sequences} must be at least 2 (RIS needs two targets)"]
        if self.frames < 4:
            out.append(f"frames={self.frames} must be at least 4 (a pass behind the occluder)")
        return out

    def resolve(self, trial: Any) -> Path:
        from datasets.synthetic.got10k import ensure_synthetic_got10k

        return ensure_synthetic_got10k(num_sequences=self.sequences, frames=self.frames,
                                       image_size=int(trial.image_size), cache=str(trial.data_cache))


@DATA_SOURCES.register
@dataclass(frozen=True)
class SyntheticPascal3D(DataSource):
    """Object instances at known viewpoints, in PASCAL3D+'s layout (datasets.synthetic.pascal3d)."""

    name: ClassVar[str] = "synthetic-pascal3d"
    layout: ClassVar[str] = PASCAL3D
    categories: int = 4
    azimuths: int = 8
    instances_per_view: int = 3

    def problems(self, trial: Any) -> list[str]:
        from datasets.synthetic.pascal3d import CATEGORY_ORDER

        out = []
        if not 2 <= self.categories <= len(CATEGORY_ORDER):
            out.append(f"categories={self.categories} must be from 2 (RIS needs two targets) to {len(CATEGORY_ORDER)}")
        if self.azimuths < 2:
            out.append(f"azimuths={self.azimuths} must be at least 2 (instance_viewpoint varies the view)")
        if self.instances_per_view < 2:
            out.append(f"instances_per_view={self.instances_per_view} must be at least 2 (instance varies the instance)")
        return out

    def resolve(self, trial: Any) -> Path:
        from datasets.synthetic.pascal3d import ensure_synthetic_pascal3d

        return ensure_synthetic_pascal3d(num_categories=self.categories, azimuths=self.azimuths,
                                         instances_per_view=self.instances_per_view,
                                         image_size=int(trial.image_size), cache=str(trial.data_cache))


@DATA_SOURCES.register
@dataclass(frozen=True)
class SyntheticHierarchy(DataSource):
    """Objects with a three-level label hierarchy (family > shape > colour variant) in
    iNat21's layout (datasets.synthetic.hierarchy), which is also a class-folder root of
    the species: the pretraining methods read it as one."""

    name: ClassVar[str] = "synthetic-hierarchy"
    layout: ClassVar[str] = IMAGE_FOLDER
    families: int = 4
    variants: int = 3
    train_per_species: int = 40
    val_per_species: int = 12
    background: str = "clutter"

    def problems(self, trial: Any) -> list[str]:
        from datasets.synthetic.hierarchy import FAMILIES, VARIANTS
        from datasets.synthetic.objects import BACKGROUNDS

        out = [f"{k}={getattr(self, k)} must be at least 1"
               for k in ("train_per_species", "val_per_species") if getattr(self, k) < 1]
        if not 2 <= self.families <= len(FAMILIES):
            out.append(f"families={self.families} must be from 2 to {len(FAMILIES)}")
        if not 2 <= self.variants <= len(VARIANTS):
            out.append(f"variants={self.variants} must be from 2 to {len(VARIANTS)}")
        if self.background not in BACKGROUNDS:
            out.append(f"background={self.background!r} is not one of {', '.join(BACKGROUNDS)}")
        return out

    def num_images(self, split: str) -> int:
        from datasets.synthetic.hierarchy import FAMILIES

        species = sum(len(shapes) for _, shapes in FAMILIES[:self.families]) * self.variants
        return species * (self.train_per_species if split == "train" else self.val_per_species)

    def resolve(self, trial: Any) -> Path:
        from datasets.synthetic.hierarchy import ensure_synthetic_hierarchy

        return ensure_synthetic_hierarchy(
            families=self.families, variants=self.variants, train_per_species=self.train_per_species,
            val_per_species=self.val_per_species, image_size=int(trial.image_size), cache=str(trial.data_cache),
            background=self.background)
