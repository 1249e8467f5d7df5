"""Ground-truth tracks (paper Sec. 5, Table 3/4's "Ground Truth Tracks").

The Region Tracker trained on annotated tracks instead of unsupervised ones: the region
pair of each frame pair (z_i, z_{i+k}) is the annotated box of the object in both
frames (the ``gt_tracks`` stage). Everything else, the region branch, the 0.5 / 0.5
loss and the shared queue, is ``region_tracker``'s. Needs a source with boxes
(TrackingNet, GOT-10k or the synthetic videos).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from trainables.methods.base import METHODS
from trainables.methods.region_tracker import RegionPairsMethod


@METHODS.register
@dataclass(frozen=True)
class GroundTruthTracks(RegionPairsMethod):
    """``method=gt_tracks``: the Region Tracker with the annotated boxes as its tracks."""

    name: ClassVar[str] = "gt_tracks"

    def track_stage(self, trial: Any):
        from datasets.video.regions import run_gt_tracks_stage

        return run_gt_tracks_stage(self.pipeline(trial), self.source(trial).chunk_frames, self.frame_gap,
                                   str(trial.data_cache))
