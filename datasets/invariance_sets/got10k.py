"""GOT-10k's occlusion invariance set (paper Sec. 3.2), a part: ``invariances=occlusion``.

"Local trajectories consisting of varying occlusions are constructed for each video by
using one sample for each unique level of occlusion": the target cut out by its box from
one frame per distinct cover level (datasets.got10k.read_occlusion). The default target
is the sequence: one object seen in one video, so only the occlusion varies within a
target, which Eq. 2 needs (its local firing rate averages over all of the target's
samples). ``target=object_class`` pools a class's sequences into one target, which then
varies in the instance (and its pose and scene) too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.invariance_sets.base import INVARIANCE_SETS, InvarianceSet, InvarianceSetPart
from datasets.sources.base import GOT10K, DataRole

GOT10K_ROLES = {"got10k": DataRole(GOT10K, default_source="synthetic-got10k")}


@INVARIANCE_SETS.register
@dataclass(frozen=True)
class Occlusion(InvarianceSetPart):
    """Occlusion trajectories from GOT-10k sequences.

    ``split``: the GOT-10k split read (the paper uses ``train``); ``target``: ``sequence``
    (each sequence its own target, the default: only occlusion varies within it) or
    ``object_class`` (``meta_info.ini``; mixes instance variation into each target);
    ``min_level``: the lowest cover level used (1: frames where some of the target is
    visible; 0 would add crops of the occluder alone); ``crop_max_side``: crops larger
    than this are shrunk (the evaluation resizes them anyway).
    """

    name: ClassVar[str] = "occlusion"
    roles: ClassVar[dict[str, DataRole]] = GOT10K_ROLES
    split: str = "train"
    target: str = "sequence"
    min_level: int = 1
    crop_max_side: int = 224

    def problems(self, trial: Any) -> list[str]:
        from datasets.got10k import MAX_COVER_LEVEL, OCCLUSION_TARGETS, SPLITS

        out = []
        if self.split not in SPLITS:
            out.append(f"split={self.split!r} is not one of {', '.join(SPLITS)}")
        if self.target not in OCCLUSION_TARGETS:
            out.append(f"target={self.target!r} is not one of {', '.join(OCCLUSION_TARGETS)}")
        if not 0 <= self.min_level <= MAX_COVER_LEVEL - 1:
            out.append(f"min_level={self.min_level} must be from 0 to {MAX_COVER_LEVEL - 1} "
                       "(a trajectory needs two levels)")
        if self.crop_max_side < 8:
            out.append(f"crop_max_side={self.crop_max_side} must be at least 8")
        return out

    def trajectories(self, root: Path, max_targets: int) -> InvarianceSet:
        from datasets.got10k import read_occlusion

        return read_occlusion(root, self.split, self.target, max_targets, self.min_level, self.crop_max_side)
