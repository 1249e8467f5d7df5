"""The base of the video methods (paper Sec. 5): MoCo v2 on data from the video pipeline.

Every video method reads the data role ``video`` (layout ``video``: a source from
``datasets.sources.video``, ``synthetic-video`` by default) through the video pipeline's
cached stages (frames, pairs, proposals; for the trackers also region features and
tracks). Each method names the pipeline stages it reads (``pipeline_stages``) and only
those are computed: the baseline reads frames, FTI frames and pairs, the Region Tracker
also proposals (selective search, the costliest stage). :meth:`VideoMethod.prepare`
builds or reuses those stages and returns their
counters as metrics; the sweep calls it on the driver before any trial starts (so Ray
Data never runs inside a trial on a small machine), and the trial calls it again when it
reports (everything is cached by then) to log the same figures in its MLflow run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from datasets.sources.base import DataRole
from datasets.sources.video import VIDEO
from trainables.methods.mocov2 import MoCoV2

VIDEO_ROLE = "video"
PIPELINE_METRICS = ("chunks", "chunk_frames", "baseline_frames", "frame_pairs", "skipped_videos", "skipped_frames",
                    "skipped_annotation_lines", "proposals")


@dataclass(frozen=True)
class VideoMethod(MoCoV2):
    """MoCo v2 whose training set comes from the video stages (not registered itself)."""

    roles: ClassVar[dict[str, DataRole]] = {VIDEO_ROLE: DataRole(VIDEO, "synthetic-video")}
    queue_size: int = 128  # the synthetic default has 288 training samples; K stays well below them
    pipeline_stages: ClassVar[tuple[str, ...]] = ("frames",)  # the video pipeline's stages this method reads

    def source(self, trial: Any):
        return trial.data[VIDEO_ROLE]

    def pipeline_frame_gap(self) -> int:
        return 1

    def pipeline(self, trial: Any):
        """The pipeline stages this method reads (``pipeline_stages``; pairs at its gap), cached."""
        return self.source(trial).run_pipeline(trial, self.pipeline_frame_gap(), self.pipeline_stages)

    def prepare(self, trial: Any) -> dict[str, float]:
        metrics = self.pipeline(trial).metrics()
        return {f"data/{k}": metrics[f"data/{k}"] for k in PIPELINE_METRICS if f"data/{k}" in metrics}

    def frame_store(self, trial: Any):
        from datasets.video.regions import FrameStore

        return FrameStore(self.pipeline(trial).stage("frames"))
