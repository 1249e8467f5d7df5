"""Frame Temporal Invariance (paper Sec. 5, Algorithm 1 without tracks).

Positive pairs are frames k apart in a chunk, V_pairs = {(z_i, z_{i+k}) : i mod k = 0},
each with its own MoCo v2 augmentation: D+ = {(t_i(z_i), t_j(z_{i+k}))}. The query comes
from z_i, the key from z_{i+k}; the rest (momentum encoder, queue, InfoNCE, Eq. 1) is
MoCo v2's, so the loss is ``mocov2``'s on these views.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch.utils.data import Dataset

from trainables.methods.base import METHODS
from trainables.methods.video_base import VideoMethod


@METHODS.register
@dataclass(frozen=True)
class FrameTemporalInvariance(VideoMethod):
    """``method=fti``: MoCo v2 with (z_i, z_{i+k}) as the query and key images."""

    name: ClassVar[str] = "fti"
    pipeline_stages: ClassVar[tuple[str, ...]] = ("frames", "pairs")
    frame_gap: int = 5  # k; the paper: 40 of 60-frame chunks (tracks degrade with k: datasets.video.tracks)

    def problems(self, trial: Any) -> list[str]:
        out = super().problems(trial)
        chunk = getattr(self.source(trial), "chunk_frames", None)
        if self.frame_gap < 1:
            out.append(f"frame_gap={self.frame_gap} must be at least 1")
        elif chunk is not None and self.frame_gap >= chunk:
            out.append(f"frame_gap={self.frame_gap} must be smaller than data.video.chunk_frames={chunk} "
                       "(else a chunk has no frame pair)")
        return out

    def pipeline_frame_gap(self) -> int:
        return self.frame_gap

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        from datasets.video.pipeline import PAIR_SCHEMA, read_stage_table
        from trainables.augment import mocov2_transform
        from trainables.video_data import FramePairs

        pairs = read_stage_table(self.pipeline(trial).stage("pairs").data, None, PAIR_SCHEMA)
        view = mocov2_transform(int(trial.image_size), (self.crop_scale_min, self.crop_scale_max))
        return FramePairs(self.frame_store(trial), pairs, view)
