"""The video baseline (paper Sec. 5, "Baseline"): MoCo v2 on frames of the videos.

The paper trains MoCo v2 on 3 uniformly spaced frames per TrackingNet video (118K
frames), the same number of images Frame Temporal Invariance gets as pairs. Everything
but the data is ``mocov2``'s: the baseline frames of the video pipeline's frames stage
(``data.video.baseline_frames`` per video), two MoCo v2 views of each.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.compute as pc
from torch.utils.data import Dataset

from trainables.methods.base import METHODS
from trainables.methods.video_base import VideoMethod


@METHODS.register
@dataclass(frozen=True)
class MoCoV2Frames(VideoMethod):
    """``method=mocov2_frames``: MoCo v2 on the baseline frames of ``data.video``."""

    name: ClassVar[str] = "mocov2_frames"

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        from datasets.video.pipeline import FRAME_SCHEMA, read_stage_table
        from trainables.augment import mocov2_transform
        from trainables.video_data import BaselineFrames

        frames = self.pipeline(trial).stage("frames")
        table = read_stage_table(frames.data, ["row", "video", "frame_index", "baseline", "problem"], FRAME_SCHEMA)
        good = pc.and_(pc.and_(pc.equal(table["row"], "frame"), table["problem"].is_null()), table["baseline"])
        table = table.filter(good)
        view = mocov2_transform(int(trial.image_size), (self.crop_scale_min, self.crop_scale_max))
        return BaselineFrames(self.frame_store(trial), list(zip(table["video"].to_pylist(),
                                                                 table["frame_index"].to_pylist())), view)
