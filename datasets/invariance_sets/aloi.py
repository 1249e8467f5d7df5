"""ALOI's three factors (paper Sec. 3.2): viewpoint, illumination direction and colour.

"ALOI directly provides 1000 local trajectories for each of the annotated properties":
every object's images under one factor form its trajectories (datasets.aloi).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from datasets.invariance_sets.base import INVARIANCE_SETS, InvarianceSet, InvarianceSetPart
from datasets.sources.base import ALOI, DataRole

ALOI_ROLES = {"aloi": DataRole(ALOI, default_source="synthetic-aloi")}


@dataclass(frozen=True)
class AloiFactor(InvarianceSetPart):
    """One ALOI factor; the part's name is the factor's."""

    roles: ClassVar[dict[str, DataRole]] = ALOI_ROLES

    def trajectories(self, root: Path, max_targets: int) -> InvarianceSet:
        from datasets.aloi import read_aloi

        return read_aloi(root, self.name, max_objects=max_targets, pooled=getattr(self, "pooled", False),
                         camera=getattr(self, "camera", 0))


@INVARIANCE_SETS.register
@dataclass(frozen=True)
class AloiViewpoint(AloiFactor):
    """Turntable rotation r0..r355 (72 views)."""

    name: ClassVar[str] = "viewpoint"


@INVARIANCE_SETS.register
@dataclass(frozen=True)
class AloiIlluminationDirection(AloiFactor):
    """Lamps l1..l8, seen by cameras c1..c3: a trajectory per (object, camera), so that
    only the lamp varies along it; ``pooled`` makes one per object (the cameras' 15-degree
    viewpoint change then varies too). With 8 lamps per trajectory both score the same
    (RIS's thresholds are per object, Appendix A: the firing thresholds see the target's
    images whichever way they are grouped). ``camera=C`` keeps camera C's images only, so
    that the target itself holds one viewpoint: the score where only the lamp varies
    within the object's images too (0, the default: every camera, as the paper's
    1,000 trajectories)."""

    name: ClassVar[str] = "illumination_direction"
    short_label: ClassVar[str] = "illum dir"
    pooled: bool = False
    camera: int = 0

    def problems(self, trial) -> list[str]:
        if isinstance(self.camera, bool) or not isinstance(self.camera, int) or self.camera < 0:
            # The trial prefixes the part's section (invariances.illumination_direction.).
            return [f"camera={self.camera!r} must be 0 (every camera) "
                    "or a camera number >= 1 (ALOI's c1..c3)"]
        return []


@INVARIANCE_SETS.register
@dataclass(frozen=True)
class AloiIlluminationColor(AloiFactor):
    """Lamp voltage i110..i250 (colour temperature)."""

    name: ClassVar[str] = "illumination_color"
    short_label: ClassVar[str] = "illum col"
