"""Video data sources: the input of the video methods (paper Sec. 5), read through the
video pipeline's cached stages (``datasets.video``).

A role of layout ``video`` resolves to a root of videos (TrackingNet's layout, GOT-10k's,
or a folder of video files); the pipeline's settings (chunks, baseline frames,
proposals) are the source's fields, and :meth:`VideoSettings.pipeline_config` joins them
with a method's own knob (the frame gap) into the ``VideoPipelineConfig`` whose stages
the method trains on. These fields are the one place of the pipeline's defaults:
``python -m orchestrator.video_pipeline`` builds its config the same way (its ``--set``
takes the same names). Resolving gives the videos' root (generating the synthetic ones);
the method builds the stages (``VideoMethod.prepare``), which a sweep calls once per trial
on the driver before any trial starts.

- ``synthetic-video`` (the default): synthetic tracking videos with exact boxes
  (``datasets.synthetic.video``), generated once into the cache. Its defaults are sized
  for a 2-core laptop: 24 videos x 80 frames at 128x96, 4 chunks of 20 frames each,
  12 baseline frames per video, the top 100 regions of each chunk frame.
  ``background_motion`` / ``background_speed``: how the background moves (``"pan"`` at
  0.25 frame widths per frame by default, so FTI's pairs at k >= 4 share no background;
  ``"drift"``: the old data, whose frames k apart share almost all of it);
  ``background_tile`` / ``background_bar``: the clutter tiles' side (0.25 x the frame's
  longer side) and occluding bars fixed to the ``"world"`` (the default) or one to the
  ``"frame"``; 1.3 / ``"frame"`` is the first pan, whose bar alone named the video.
- ``video``: a real root (``root``; ``format`` auto-detected or one of
  ``trackingnet``, ``got10k``, ``video-files``), the paper's chunking by default.
- ``video-frames``: not a video role but an image folder (pretraining on video frames,
  Cole et al. 2022's data domain): one frame in every ``every`` of the synthetic videos or
  of a real root's, decoded by the same readers (``datasets.video.frame_images``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.errors import DatasetFormatError
from datasets.sources.base import DATA_SOURCES, IMAGE_FOLDER, DataSource, existing_dir

VIDEO = "video"  # <root>: videos in TrackingNet's, GOT-10k's layout or video files (datasets.video.sources)


@dataclass(frozen=True)
class VideoSettings(DataSource):
    """The video pipeline's knobs that a video source owns (paper values in the ``video`` source)."""

    layout: ClassVar[str] = VIDEO
    chunks: int = 4  # paper: 4 chunks per video
    chunk_frames: int = 60  # paper: 60 consecutive frames per chunk
    baseline_frames: int = 3  # paper: 3 uniformly spaced frames per video
    proposals_per_frame: int = 300  # paper: top 300 selective-search regions
    proposal_max_side: int = 160  # selective search on the frame shrunk to this side (0: full size)

    def problems(self, trial: Any) -> list[str]:
        out = [f"{k}={getattr(self, k)} must be at least 1" for k in
               ("chunks", "chunk_frames", "baseline_frames", "proposals_per_frame") if getattr(self, k) < 1]
        if self.chunk_frames < 2:
            out.append(f"chunk_frames={self.chunk_frames} must be at least 2 (a frame pair)")
        if self.proposal_max_side != 0 and self.proposal_max_side < 16:
            out.append(f"proposal_max_side={self.proposal_max_side} must be 0 (full size) or at least 16")
        return out

    def source_fields(self, trial: Any) -> dict[str, Any]:
        raise NotImplementedError

    def pipeline_config(self, trial: Any, frame_gap: int = 1):
        """The ``VideoPipelineConfig`` of this source with a method's frame gap k."""
        from datasets.video.config import VideoPipelineConfig

        return VideoPipelineConfig(
            video_chunks=self.chunks, chunk_frames=self.chunk_frames, baseline_frames_per_video=self.baseline_frames,
            frame_gap=frame_gap, proposals_per_frame=self.proposals_per_frame,
            proposal_max_side=self.proposal_max_side, data_cache=str(trial.data_cache), **self.source_fields(trial))

    def run_pipeline(self, trial: Any, frame_gap: int = 1, stages: tuple[str, ...] | None = None):
        """The ``stages`` (default all: frames, pairs at gap k, proposals), cached; Ray only for what is missing."""
        from datasets.video.pipeline import PIPELINE_STAGES, run_video_pipeline

        return run_video_pipeline(self.pipeline_config(trial, frame_gap), echo=False,
                                  stages=PIPELINE_STAGES if stages is None else stages)

    def resolve(self, trial: Any) -> Path:
        """The root of the videos (synthetic ones generated once); the stages are the method's
        to build (``VideoMethod.prepare``), as they depend on its frame gap."""
        from datasets.video.pipeline import resolve_source

        return resolve_source(self.pipeline_config(trial))[0]


@DATA_SOURCES.register
@dataclass(frozen=True)
class SyntheticVideo(VideoSettings):
    """Synthetic tracking videos in TrackingNet's layout (``datasets.synthetic.video``), exact boxes."""

    name: ClassVar[str] = "synthetic-video"
    videos: int = 24
    frames: int = 80
    width: int = 128
    height: int = 96
    chunk_frames: int = 20
    baseline_frames: int = 12  # as many frames as pairs at k = 5 (the paper: 118K of each)
    proposals_per_frame: int = 100
    proposal_max_side: int = 0
    background_motion: str = "pan"  # datasets.synthetic.video.BACKGROUND_MOTIONS; "drift" = the old data
    background_speed: float = 0.25  # frame widths per frame ("pan"): frames k >= 4 apart share no background
    background_tile: float = 0.25  # clutter tile side / the frame's longer side ("pan"; 1.3: the first pan)
    background_bar: str = "world"  # occluding bars move with the background ("pan"); "frame": one bar standing still

    def problems(self, trial: Any) -> list[str]:
        from datasets.synthetic.video import background_problems

        out = super().problems(trial)
        out += background_problems(self.background_motion, self.background_speed, self.background_tile,
                                   self.background_bar)
        out += [f"{k}={getattr(self, k)} must be at least 1" for k in ("videos", "frames") if getattr(self, k) < 1]
        if self.width < 32 or self.height < 32:
            out.append(f"width x height = {self.width}x{self.height} must be at least 32x32")
        if self.frames < self.chunk_frames:
            out.append(f"frames={self.frames} is shorter than one chunk of chunk_frames={self.chunk_frames}")
        return out

    def source_fields(self, trial: Any) -> dict[str, Any]:
        from datasets.video.config import SYNTHETIC_SOURCE

        return {"source": SYNTHETIC_SOURCE, "synthetic_videos": self.videos, "synthetic_frames": self.frames,
                "synthetic_width": self.width, "synthetic_height": self.height,
                "synthetic_background_motion": self.background_motion,
                "synthetic_background_speed": float(self.background_speed),
                "synthetic_background_tile": float(self.background_tile),
                "synthetic_background_bar": self.background_bar}


@DATA_SOURCES.register
@dataclass(frozen=True)
class VideoRoot(VideoSettings):
    """Real videos at ``root``: TrackingNet, GOT-10k (its ``train/``) or a folder of video files."""

    name: ClassVar[str] = "video"
    root: str = ""
    format: str = "auto"

    def problems(self, trial: Any) -> list[str]:
        from datasets.video.config import SOURCE_FORMATS

        out = super().problems(trial)
        if not self.root:
            out.append("root is not set: point it at a TrackingNet, GOT-10k or video-file folder")
        if self.format not in SOURCE_FORMATS:
            out.append(f"format={self.format!r} is not one of {', '.join(SOURCE_FORMATS)}")
        return out

    def check_root(self, needs: tuple[str, ...]) -> list[str]:
        """The format is recognised and, for GOT-10k, every folder its ``list.txt`` names
        is there (cheap; the pipeline's discovery reads each sequence before any Ray work)."""
        if not self.root:
            return []
        from datasets.got10k import sequence_folders_under
        from datasets.video.sources import detect_format

        try:
            folder = existing_dir(self.root, self.name)
            if (detect_format(folder) if self.format == "auto" else self.format) == "got10k":
                sequence_folders_under(folder)
        except (DatasetFormatError, ValueError) as err:
            return [str(err)]
        return []

    def source_fields(self, trial: Any) -> dict[str, Any]:
        return {"source": self.root, "source_format": self.format}


@DATA_SOURCES.register
@dataclass(frozen=True)
class VideoFrames(DataSource):
    """One frame in every ``every`` of videos, as images in ``train/<video>/`` (ImageNet's
    layout): video frames as a pretraining domain (Cole et al. 2022, Sec. 4.2). ``root`` ""
    reads the ``synthetic-video`` source's videos (``videos`` x ``frames``, its other
    settings at their defaults); a real root is read as the ``video`` source reads it
    (``format``). ``max_images`` > 0 keeps that many, evenly spaced (match another set's size)."""

    name: ClassVar[str] = "video-frames"
    layout: ClassVar[str] = IMAGE_FOLDER
    root: str = ""
    format: str = "auto"
    every: int = 4  # one frame in every k: neighbouring frames are near-duplicates
    max_images: int = 0
    videos: int = SyntheticVideo.videos  # the synthetic videos' size (root "")
    frames: int = SyntheticVideo.frames

    def video_source(self) -> VideoSettings:
        """The video source whose videos are read: the synthetic ones, or ``video`` at ``root``."""
        if self.root:
            return VideoRoot(root=self.root, format=self.format)
        return SyntheticVideo(videos=self.videos, frames=self.frames,
                              chunk_frames=min(SyntheticVideo.chunk_frames, max(self.frames, 1)))

    def problems(self, trial: Any) -> list[str]:
        out = [] if self.every >= 1 else [f"every={self.every} must be at least 1"]
        if self.max_images < 0:
            out.append(f"max_images={self.max_images} must be >= 0 (0 = all)")
        return out + self.video_source().problems(trial)

    def check_root(self, needs: tuple[str, ...]) -> list[str]:
        return self.video_source().check_root(needs)

    def num_images(self, split: str) -> int | None:
        if split != "train" or self.root or self.every < 1:
            return None  # a real root's frames are counted when its videos are opened
        sampled = self.videos * -(-self.frames // self.every)
        return min(sampled, self.max_images or sampled)

    def resolve(self, trial: Any) -> Path:
        from datasets.video.frame_images import video_frame_folder
        from datasets.video.pipeline import resolve_source

        root, source_format = resolve_source(self.video_source().pipeline_config(trial))
        return video_frame_folder(root, source_format, self.every, self.max_images, str(trial.data_cache))
