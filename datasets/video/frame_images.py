"""Video frames as a pretraining image set (Cole et al. 2022, "When does contrastive visual
representation learning work?", Sec. 4.2, the data domain): one frame in every ``every`` of
each video, as images in an ImageNet-style root, one class folder per video.

The videos are found and decoded by the video pipeline's readers (``datasets.video.sources``:
TrackingNet, GOT-10k, folders of video files), one reader per format; JPEG frames are copied
as they are, decoded ones (video files) written as PNG. The folder is built once in the data
cache, keyed by the source listing's fingerprints, ``every`` and ``max_images``.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import cv2

from datasets.cache import build_once, cache_key, cache_root
from datasets.errors import DatasetFormatError
from datasets.subsets import evenly_spaced

FRAMES_VERSION = 1


def sampled_positions(num_frames: int, every: int) -> list[int]:
    """Positions 0, every, 2 x every, ... of a video of `num_frames` frames."""
    if every < 1:
        raise ValueError(f"every={every} must be at least 1")
    return list(range(0, num_frames, every))


def video_frame_folder(root: Path | str, source_format: str = "auto", every: int = 4, max_images: int = 0,
                       cache: str = "") -> Path:
    """The folder (``<folder>/train/<video>/<position>.<ext>``) of one frame in every `every` of
    each video under `root`, at most `max_images` of them (evenly spaced over the videos' sampled
    frames, in video order; 0 = all). Unreadable frames are left out; none readable is a
    DatasetFormatError naming the root."""
    from datasets.video.pipeline import source_key
    from datasets.video.sources import OpenedVideo, discover_videos

    videos = discover_videos(root, source_format)
    if not videos:
        raise DatasetFormatError(f"{root}: no video found")
    target = cache_root(cache) / cache_key("video-frames", FRAMES_VERSION, of=source_key(videos).removeprefix("source-"),
                                           every=every, max=max_images)

    def build(tmp: Path) -> None:
        opened = [OpenedVideo(video) for video in videos]
        picks = [(v, position) for v, video in enumerate(opened)
                 for position in sampled_positions(video.num_frames, every)]
        wanted: dict[int, list[int]] = defaultdict(list)
        for k in evenly_spaced(len(picks), max_images):
            v, position = picks[k]
            wanted[v].append(position)
        written = 0
        for v, positions in wanted.items():
            folder = tmp / "train" / videos[v].video.replace("/", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for frame in opened[v].read(positions):
                if frame.image is None:
                    continue  # reported by the reader's problem; training would skip it too
                if frame.encoded is not None:
                    (folder / f"{frame.index:07d}.jpg").write_bytes(frame.encoded)
                else:
                    cv2.imwrite(str(folder / f"{frame.index:07d}.png"), frame.image)
                written += 1
        if written == 0:
            raise DatasetFormatError(f"{root}: no readable frame among {len(picks)} sampled (every {every})")

    return build_once(target, build)
