"""A pooled pretraining set: a fixed number of images drawn in equal shares from several
sources (Cole et al. 2022, "When does contrastive visual representation learning work?",
Sec. 4.2, Table 2: pooled sets the size of one domain's set).

``parts`` is a JSON list of data-role sections, each as a sweep's space writes one
(``{"source": "synthetic-objects", "background": "plain"}``; a bare name takes the
source's defaults); every part must yield class folders. ``images`` is the pool's size:
each part gives ``images // len(parts)`` train images, the first ``images % len(parts)``
parts one more. A part's share is the first of one fixed permutation of its train images,
drawn from ``seed`` and the part's position (``datasets.subsets.fixed_permutation``), so a
pool is the same images in every trial. The pool is an image folder in the data cache,
``train/<position>_<source>_<class>/`` holding links to the drawn images; its shares are
the trial's figures ``data/<role>/pool_<position>_<source>``. A part that holds fewer
images than its share is refused before any trial: by its settings' count where a
generator's settings give one, else when the sweep resolves its root on the driver.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.registry import ConfigError
from datasets.sources.base import DATA_SOURCES, IMAGE_FOLDER, SOURCE_KEY, DataSource

POOL_VERSION = 1
DEFAULT_PARTS = json.dumps([{SOURCE_KEY: "synthetic-objects"}, {SOURCE_KEY: "synthetic-coco-scenes"},
                            {SOURCE_KEY: "video-frames"}])


def part_source(index: int, section: Any) -> DataSource:
    """The data source of ``parts[index]`` (a section or a name); ConfigError naming what is wrong."""
    where = f"parts[{index}]"
    if isinstance(section, str):
        section = {SOURCE_KEY: section}
    if not isinstance(section, dict) or not isinstance(section.get(SOURCE_KEY), str):
        raise ConfigError(f"{where}={section!r} must be a source name or a section naming its \"{SOURCE_KEY}\"")
    settings = dict(section)
    name = settings.pop(SOURCE_KEY)
    try:
        cls = DATA_SOURCES.get(name)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    if cls is Pooled:
        raise ConfigError(f"{where}: a pool cannot hold another pool")
    if cls.layout != IMAGE_FOLDER:
        raise ConfigError(f"{where}: {name} yields the {cls.layout} layout; a pool draws images from "
                          f"{IMAGE_FOLDER} sources")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, value in settings.items():
        if key not in fields:
            raise ConfigError(f"{where}.{key}: {name} has no such setting; it has {', '.join(sorted(fields))}")
        kind = hints[key]
        fits = kind is bool if isinstance(value, bool) else isinstance(value, (int, float) if kind is float else kind)
        if not fits:
            raise ConfigError(f"{where}.{key}={value!r} must be of type {kind.__name__}")
    return cls(**settings)


def equal_shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` counts differing by at most one, the larger ones first."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


@DATA_SOURCES.register
@dataclass(frozen=True)
class Pooled(DataSource):
    """``images`` train images in equal shares from the ``parts`` sources (see the module)."""

    name: ClassVar[str] = "pooled"
    layout: ClassVar[str] = IMAGE_FOLDER
    parts: str = DEFAULT_PARTS
    images: int = 300
    seed: int = 0  # the draw's own seed, not the trial's: the same pool in every trial

    def sources(self) -> list[DataSource]:
        """The parts' sources, in order (ConfigError when ``parts`` is not a list of sections)."""
        try:
            sections = json.loads(self.parts)
        except json.JSONDecodeError as err:
            raise ConfigError(f"parts is not JSON ({err}): expected a list like {DEFAULT_PARTS}") from None
        if not isinstance(sections, list) or len(sections) < 2:
            raise ConfigError(f"parts must list two or more sources (a JSON list), got {self.parts!r}")
        return [part_source(k, section) for k, section in enumerate(sections)]

    def shares(self) -> list[int]:
        return equal_shares(self.images, len(self.sources()))

    def problems(self, trial: Any) -> list[str]:
        try:
            sources = self.sources()
        except ConfigError as err:
            return [str(err)]
        out = [] if self.seed >= 0 else [f"seed={self.seed} must be at least 0"]
        if self.images < len(sources):
            return out + [f"images={self.images} must be at least one per part ({len(sources)} parts)"]
        for k, (source, share) in enumerate(zip(sources, self.shares())):
            out += [f"parts[{k}].{p}" for p in source.problems(trial)]
            held = source.num_images("train")
            if held is not None and held < share:
                out.append(f"parts[{k}] ({source.name}) holds {held} train images, fewer than its share {share} "
                           f"of images={self.images}; lower images or enlarge the part")
        return out

    def check_root(self, needs: tuple[str, ...]) -> list[str]:
        try:
            sources = self.sources()
        except ConfigError:
            return []  # (reported by `problems`)
        return [f"parts[{k}] ({s.name}): {p}" for k, s in enumerate(sources) for p in s.check_root(("train",))]

    def num_images(self, split: str) -> int | None:
        return self.images if split == "train" else None

    def figures(self, trial: Any) -> dict[str, float]:
        return {f"pool_{k}_{s.name}": float(n) for k, (s, n) in enumerate(zip(self.sources(), self.shares()))}

    def resolve(self, trial: Any) -> Path:
        from datasets.cache import build_once, cache_key, cache_root, file_stamp
        from datasets.image_folder import scan_image_folder
        from datasets.subsets import fixed_permutation
        from datasets.sources.base import split_dir

        drawn = []  # per part: (its name, its class names, the drawn (path, label) pairs)
        for k, (source, share) in enumerate(zip(self.sources(), self.shares())):
            root = split_dir(source.resolve(trial), "train")
            samples, classes = scan_image_folder(root)
            if len(samples) < share:
                raise ConfigError(f"data pool parts[{k}] ({source.name}) at {root} holds {len(samples)} train "
                                  f"images, fewer than its share {share} of images={self.images}")
            keep = sorted(fixed_permutation(len(samples), self.seed, k)[:share])
            drawn.append((source.name, classes, [samples[i] for i in keep]))
        listing = "|".join(f"{p.resolve()}{file_stamp(p)}" for _, _, samples in drawn for p, _ in samples)
        digest = hashlib.sha1(listing.encode()).hexdigest()[:16]
        target = cache_root(str(trial.data_cache)) / cache_key("pooled", POOL_VERSION, of=digest)

        def build(tmp: Path) -> None:
            for k, (name, classes, samples) in enumerate(drawn):
                for i, (path, label) in enumerate(samples):
                    folder = tmp / "train" / f"{k}_{name}_{classes[label]}"
                    folder.mkdir(parents=True, exist_ok=True)
                    os.symlink(Path(path).resolve(), folder / f"{i:07d}{Path(path).suffix.lower()}")

        return build_once(target, build)
