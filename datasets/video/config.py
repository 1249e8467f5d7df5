"""The video pipeline's typed config section, with readable checks."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SOURCE_FORMATS = ("auto", "trackingnet", "got10k", "video-files")
SYNTHETIC_SOURCE = "synthetic-trackingnet"


@dataclass(frozen=True)
class VideoPipelineConfig:
    """Knobs of the video preprocessing (paper values in comments: Sec. 5 and Appendix B).

    ``source`` is :data:`SYNTHETIC_SOURCE` (synthetic videos in TrackingNet's layout,
    generated once into the cache) or a path to a TrackingNet root, a GOT-10k root or a
    folder of video files.
    """

    source: str = SYNTHETIC_SOURCE
    source_format: str = "auto"  # one of SOURCE_FORMATS
    video_chunks: int = 4  # paper: 4 chunks per video
    chunk_frames: int = 60  # paper: 60 consecutive frames per chunk
    baseline_frames_per_video: int = 3  # paper: 3 uniformly spaced frames per video
    frame_gap: int = 10  # k of the frame pairs (z_i, z_{i+k}); swept in the paper
    proposals_per_frame: int = 300  # paper: top 300 selective-search regions
    proposal_max_side: int = 160  # selective search runs on the frame shrunk to this side (0: full size)
    jpeg_quality: int = 90  # frames decoded from video files are stored as JPEG at this quality
    # The synthetic videos (only used when source is SYNTHETIC_SOURCE).
    synthetic_videos: int = 6
    synthetic_frames: int = 300
    synthetic_width: int = 160
    synthetic_height: int = 120
    synthetic_background_motion: str = "pan"  # "pan" or "drift" (the old data); datasets.synthetic.video
    synthetic_background_speed: float = 0.25  # frame widths per frame, for "pan"
    synthetic_background_tile: float = 0.25  # clutter tile side / the frame's longer side, for "pan" (1.3: older data)
    synthetic_background_bar: str = "world"  # occluding bars fixed to the "world" (pan) or one to the "frame" (older)
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

    @classmethod
    def from_overrides(cls, overrides: dict[str, str], base: "VideoPipelineConfig | None" = None) -> "VideoPipelineConfig":
        """``base`` with ``KEY=VALUE`` strings applied, each converted to the field's type."""
        base = base or cls()
        fields = {field.name: field for field in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for key, text in overrides.items():
            if key not in fields:
                raise ValueError(f"unknown video pipeline key {key!r}; known: {', '.join(sorted(fields))}")
            kind = type(getattr(base, key))
            try:
                changes[key] = kind(text)
            except ValueError:
                raise ValueError(f"{key}={text!r}: expected {kind.__name__}") from None
        return dataclasses.replace(base, **changes)
