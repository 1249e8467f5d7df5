"""Invariance sets: images grouped into local trajectories of one transformation.

Top-K RIS (paper Sec. 3, Appendix A) needs, for one factor of variation, images of
targets (objects) grouped into local trajectories along which only that factor varies.
An invariance set part reads them from a data role's root and returns an
:class:`InvarianceSet`; the evaluation stage extracts features and scores
``ris/<name>/top10`` and ``ris/<name>/top25`` for each set a trial names.

Protocol: ``roles`` (the one data role it reads, with its layout) and
``trajectories(root, max_targets)``, where ``root`` is that role's resolved root.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from datasets.registry import Part, Registry, ReportColumn
from datasets.sources.base import DataRole

# The paper's six invariances (Table 1), spelled as in the MLflow keys of DESIGN.md.
INVARIANCES: tuple[str, ...] = (
    "occlusion",
    "viewpoint",
    "illumination_direction",
    "illumination_color",
    "instance",
    "instance_viewpoint",
)


@dataclass(frozen=True)
class InvarianceSet:
    """Images grouped into local trajectories for one factor of variation.

    ``paths[k]`` shows target ``targets[k]`` and belongs to trajectory
    ``trajectories[k]`` (both int64). ``skipped`` counts what the reader left out and
    why (e.g. ``{"missing_frames": 2}``), so the evaluation can report it; readers with
    nothing to skip leave it empty. ``sources[k]``, where a reader gives them, says what
    ``paths[k]`` was cut from (PASCAL3D+: ``<annotation>.mat#<object index>``; GOT-10k:
    the frame's path), so a crop can be traced back to its annotation; empty otherwise.
    """

    factor: str
    paths: list[Path]
    targets: np.ndarray
    trajectories: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.paths) == len(self.targets) == len(self.trajectories):
            raise ValueError(
                f"{self.factor}: {len(self.paths)} paths, {len(self.targets)} targets and "
                f"{len(self.trajectories)} trajectories must have the same length"
            )
        if self.sources and len(self.sources) != len(self.paths):
            raise ValueError(f"{self.factor}: {len(self.sources)} sources for {len(self.paths)} paths")

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class InvarianceSetPart(Part):
    """A registered invariance set. Its name is the metric's ``<invariance>``."""

    roles: ClassVar[dict[str, DataRole]] = {}
    short_label: ClassVar[str] = ""  # its column head on a 100-column terminal ("": its name)

    @classmethod
    def report_columns(cls) -> tuple[ReportColumn, ...]:
        """One column: Top-10 / Top-25 RIS in percent."""
        return (ReportColumn((f"ris/{cls.name}/top10", f"ris/{cls.name}/top25"), cls.name,
                             cls.short_label or cls.name[:9]),)

    def trajectories(self, root: Path, max_targets: int) -> InvarianceSet:
        """The set's images under `root`; ``max_targets > 0`` keeps the first that many targets."""
        raise NotImplementedError


INVARIANCE_SETS: Registry[type[InvarianceSetPart]] = Registry("invariance set", InvarianceSetPart, package=__package__)
