"""PASCAL3D+'s instance and instance+viewpoint invariance sets (paper Sec. 3.2), parts:
``invariances=instance,instance_viewpoint``.

Under Eq. 2 a target's local firing rate is the unit's firing fraction over all of the
target's samples when its trajectories partition them, so a target may vary only in the
set's factor (datasets.pascal3d.read_instance_set):

- ``instance``: target = (category, viewpoint bin), one trajectory of its objects:
  "objects belonging to the same category and depicted in the same viewpoint,
  restricting the transformation to instance changes only";
- ``instance_viewpoint``: target = category, trajectories of one object per viewpoint
  bin: "objects from the same category, but different viewpoints ... each trajectory
  only contains one image for each unique viewpoint".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.invariance_sets.base import INVARIANCE_SETS, InvarianceSet, InvarianceSetPart
from datasets.sources.base import PASCAL3D, DataRole

PASCAL3D_ROLES = {"pascal3d": DataRole(PASCAL3D, default_source="synthetic-pascal3d")}


@dataclass(frozen=True)
class Pascal3DFactor(InvarianceSetPart):
    """Cropped PASCAL3D+ objects grouped by category and viewpoint bin (targets: see the module).

    ``azimuth_bins``: equal sectors of the circle, the first centred on azimuth 0
    (default 8: 45 degrees each); ``elevation_bins``: equal bands of [-90, 90] degrees
    (default 3: 60 degrees each); ``subsets``: ``pascal``, ``imagenet`` or both
    (comma-separated); ``include_truncated``, ``include_occluded``,
    ``include_difficult``: such objects are left out by default (the paper's sets are
    clean views of whole objects); ``crop_max_side``: crops larger than this are shrunk.
    """

    roles: ClassVar[dict[str, DataRole]] = PASCAL3D_ROLES
    azimuth_bins: int = 8
    elevation_bins: int = 3
    subsets: str = "pascal,imagenet"
    include_truncated: bool = False
    include_occluded: bool = False
    include_difficult: bool = False
    crop_max_side: int = 224

    def _subsets(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.subsets.split(",") if s.strip())

    def problems(self, trial: Any) -> list[str]:
        from datasets.pascal3d import SUBSETS

        out = [f"{k}={getattr(self, k)} must be at least 1"
               for k in ("azimuth_bins", "elevation_bins") if getattr(self, k) < 1]
        if self.name == "instance_viewpoint" and self.azimuth_bins * self.elevation_bins < 2:
            out.append("azimuth_bins=1 and elevation_bins=1 leave one viewpoint: nothing for a trajectory to vary")
        chosen = self._subsets()
        if not chosen or any(s not in SUBSETS for s in chosen):
            out.append(f"subsets={self.subsets!r} must name one or both of {', '.join(SUBSETS)}")
        if self.crop_max_side < 8:
            out.append(f"crop_max_side={self.crop_max_side} must be at least 8")
        return out

    def trajectories(self, root: Path, max_targets: int) -> InvarianceSet:
        from datasets.pascal3d import ObjectFilter, read_instance_set

        keep = ObjectFilter(self.include_truncated, self.include_occluded, self.include_difficult, self._subsets())
        return read_instance_set(root, self.name, keep, self.azimuth_bins, self.elevation_bins, max_targets,
                                 self.crop_max_side)


@INVARIANCE_SETS.register
@dataclass(frozen=True)
class Instance(Pascal3DFactor):
    """Target = (category, viewpoint bin), its objects one trajectory: only the instance changes."""

    name: ClassVar[str] = "instance"


@INVARIANCE_SETS.register
@dataclass(frozen=True)
class InstanceViewpoint(Pascal3DFactor):
    """Target = category, trajectories of one object per viewpoint bin: instance and viewpoint change."""

    name: ClassVar[str] = "instance_viewpoint"
    short_label: ClassVar[str] = "inst+view"
