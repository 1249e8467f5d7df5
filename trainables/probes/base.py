"""Probes: how discriminative frozen features are (paper Sec. 5 and Table 2).

A probe reads one data role, asks the evaluation stage for frozen features of the
images it needs (:class:`trainables.features.FeatureExtractor`, one extraction path
shared with RIS) and returns its metrics, named as in ../shared/DESIGN.md
(``probe/<name>``).

Protocol: ``roles`` (the one data role it reads),
``evaluate(root, features, trial) -> dict[str, float]``, and ``read(root, trial)``: its
annotations and listings parsed and checked, which ``evaluate`` starts from and the
sweep's prepare stage calls before any trial (a malformed file is refused before
training, not found after it). Optional: ``image_paths(root, trial)``, the images
``evaluate`` will ask for, so that the Ray Data path embeds them in one run with the
invariance sets.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.registry import Part, Registry
from datasets.sources.base import DataRole


@dataclass(frozen=True)
class Probe(Part):
    """A registered probe."""

    roles: ClassVar[dict[str, DataRole]] = {}

    def evaluate(self, root: Path, features: Any, trial: Any) -> dict[str, float]:
        """The probe's metrics on the data under `root` (its role's resolved root)."""
        raise NotImplementedError

    def image_paths(self, root: Path, trial: Any) -> list[list[Path]]:
        """The images `evaluate` will embed through `features` as given (the evaluation's
        own view), a list per call, so that an extraction path that embeds many sets in one
        run (`trainables.features.RayDataFeatures.prefetch`: one actor pool, one model
        load per actor) embeds them with the invariance sets. The default announces none:
        `evaluate` may ask for any image; announced ones are only served faster."""
        return []

    def read(self, root: Path, trial: Any) -> Any:
        """Every annotation and listing under `root` that `evaluate` reads, parsed and
        checked: a bad one raises `DatasetFormatError` naming the file and the fault. No
        images are decoded. A probe that reads only images (whose layout its data source
        checks) parses nothing here."""
        return None


PROBES: Registry[type[Probe]] = Registry("probe", Probe, package=__package__)
