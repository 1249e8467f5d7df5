"""The video pipeline's typed config section, with readable checks."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from datasets.sources.video import SyntheticVideo

SOURCE_FORMATS = ("auto", "trackingnet", "got10k", "video-files")
SYNTHETIC_SOURCE = "synthetic-trackingnet"


@dataclass(frozen=True, kw_only=True)
class VideoPipelineConfig:
    """The parameters the video stages are keyed by (paper values: Sec. 5 and Appendix B).

    Not a user-facing config: a video data source (``datasets.sources.video``, what sweeps
    and ``python -m orchestrator.video_pipeline`` both read) builds it with
    :meth:`~datasets.sources.video.VideoSettings.pipeline_config`, joining its fields with a
    method's frame gap. So the fields that source owns have no default here; the synthetic
    videos' knobs (read only when ``source`` is :data:`SYNTHETIC_SOURCE`) default to the
    ``synthetic-video`` source's, and only the knobs no source owns keep a default of
    their own.

    ``source`` is :data:`SYNTHETIC_SOURCE` (synthetic videos in TrackingNet's layout,
    generated once into the cache) or a path to a TrackingNet root, a GOT-10k root or a
    folder of video files.
    """

    source: str
    source_format: str = "auto"  # one of SOURCE_FORMATS
    video_chunks: int  # the source's chunks (paper: 4 per video)
    chunk_frames: int  # the source's chunk_frames (paper: 60 consecutive frames)
    baseline_frames_per_video: int  # the source's baseline_frames (paper: 3 uniformly spaced)
    frame_gap: int  # the method's k of the frame pairs (z_i, z_{i+k}); swept in the paper
    proposals_per_frame: int  # the source's (paper: top 300 selective-search regions)
    proposal_max_side: int  # selective search runs on the frame shrunk to this side (0: full size)
    jpeg_quality: int = 90  # frames decoded from video files are stored as JPEG at this quality
    # The synthetic videos: the synthetic-video source's fields (datasets.synthetic.video).
    synthetic_videos: int = SyntheticVideo.videos
    synthetic_frames: int = SyntheticVideo.frames
    synthetic_width: int = SyntheticVideo.width
    synthetic_height: int = SyntheticVideo.height
    synthetic_background_motion: str = SyntheticVideo.background_motion
    synthetic_background_speed: float = SyntheticVideo.background_speed
    synthetic_background_tile: float = SyntheticVideo.background_tile
    synthetic_background_bar: str = SyntheticVideo.background_bar
    seed: int = 0
    # Where stages and generated videos are cached ("" = $DSSL_CACHE_DIR or ~/.cache/demystify-ssl).
    data_cache: str = ""
    # Most selective-search actors (0: datasets.placement.MAX_CPU_POOL_ACTORS); the pool grows from one.
    proposal_actors: int = 0

    def validate(self) -> list[str]:
        """Readable problems with this config; empty when it is usable."""
        problems = []
        if not self.source:
            problems.append(f"source must be {SYNTHETIC_SOURCE!r} or a path, got an empty string")
        if self.source_format not in SOURCE_FORMATS:
            problems.append(f"source_format must be one of {', '.join(SOURCE_FORMATS)}, got {self.source_format!r}")
        for name in ("video_chunks", "chunk_frames", "baseline_frames_per_video", "frame_gap", "proposals_per_frame",
                     "synthetic_videos", "synthetic_frames"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.frame_gap >= self.chunk_frames:
            problems.append(f"frame_gap ({self.frame_gap}) must be smaller than chunk_frames ({self.chunk_frames}), "
                            "else a chunk has no frame pair")
        if self.proposal_max_side != 0 and self.proposal_max_side < 16:
            problems.append(f"proposal_max_side must be 0 (full size) or >= 16, got {self.proposal_max_side}")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.synthetic_width < 32 or self.synthetic_height < 32:
            problems.append(f"synthetic frames must be at least 32x32, got {self.synthetic_width}x{self.synthetic_height}")
        from datasets.synthetic.video import background_problems

        problems += [f"synthetic_{p}" for p in background_problems(
            self.synthetic_background_motion, self.synthetic_background_speed, self.synthetic_background_tile,
            self.synthetic_background_bar)]
        if self.proposal_actors < 0:
            problems.append(f"proposal_actors must be >= 0, got {self.proposal_actors}")
        return problems

    def replace(self, **changes: Any) -> "VideoPipelineConfig":
        return dataclasses.replace(self, **changes)
