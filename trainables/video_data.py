"""Training sets of the video methods, read from the video pipeline's cached stages.

- :class:`BaselineFrames`: the baseline's frames (3 uniformly spaced frames per video in
  the paper), two MoCo v2 views of one frame;
- :class:`FramePairs`: Frame Temporal Invariance's pairs (z_i, z_{i+k}), one MoCo v2 view
  of each frame (paper Sec. 5: D+ = {(t_i(z_i), t_j(z_{i+k}))});
- :class:`TrackedFramePairs`: the same pairs, each with one region pair tracked from z_i
  to z_{i+k} drawn at random from the track table (Algorithm 1's ``sample_track``); each
  box moves with its frame's augmentation (``torchvision.transforms.v2`` transforms image
  and ``BoundingBoxes`` together). A pair without a kept track, or whose region left
  the crop, is marked invalid and only takes part in the frame loss.

Frames are JPEG bytes in the frames stage (``datasets.video.regions.FrameStore``); an
unreadable one gives ``None`` (the loop replaces and counts it).
"""
from __future__ import annotations

import random
from collections import defaultdict

import pyarrow as pa
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.io import decode_jpeg

from datasets.video.regions import FrameStore

MIN_REGION_SIDE = 2.0  # pixels of the augmented view a region must keep on each side


def decode(store: FrameStore, video: str, frame_index: int) -> torch.Tensor | None:
    try:
        return decode_jpeg(torch.frombuffer(bytearray(store.jpeg(video, frame_index)), dtype=torch.uint8))
    except (RuntimeError, KeyError, ValueError):
        return None


class BaselineFrames(Dataset):
    """Two views of each baseline frame (``baseline`` rows of the frames stage)."""

    def __init__(self, store: FrameStore, frames: list[tuple[str, int]], transform):
        self.store, self.frames, self.transform = store, frames, transform
        self.root = store.folder

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int):
        image = decode(self.store, *self.frames[index])
        if image is None:
            return None
        return (self.transform(image), self.transform(image)), 0


class FramePairs(Dataset):
    """One MoCo v2 view of z_i (the query) and one of z_{i+k} (the key)."""

    def __init__(self, store: FrameStore, pairs: pa.Table, transform):
        self.store, self.transform = store, transform
        self.pairs = list(zip(*(pairs[c].to_pylist() for c in ("video", "frame_a", "frame_b"))))
        self.root = store.folder

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        video, a, b = self.pairs[index]
        first, second = decode(self.store, video, a), decode(self.store, video, b)
        if first is None or second is None:
            return None
        return (self.transform(first), self.transform(second)), 0


def augment_with_box(transform, image: torch.Tensor, box) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(view, box in the view's pixels, whether the region is still in the view)``."""
    if box is None:
        return transform(image), torch.zeros(4), False
    boxes = tv_tensors.BoundingBoxes([box], format="XYWH", canvas_size=tuple(image.shape[-2:]))
    view, moved = transform(image, boxes)
    height, width = view.shape[-2:]
    x0, y0, w, h = moved[0].float().tolist()
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(width), x0 + w), min(float(height), y0 + h)
    visible = x1 - x0 >= MIN_REGION_SIDE and y1 - y0 >= MIN_REGION_SIDE
    return view, torch.tensor([x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)]), visible


class TrackedFramePairs(FramePairs):
    """Frame pairs with one tracked region pair each: ``(x_q, x_k, box_q, box_k, valid)``."""

    def __init__(self, store: FrameStore, pairs: pa.Table, tracks: pa.Table, transform):
        super().__init__(store, pairs, transform)
        self.tracks: dict[tuple[str, int, int], list[tuple[list, list]]] = defaultdict(list)
        for video, a, b, box_a, box_b in zip(*(tracks[c].to_pylist() for c in
                                               ("video", "frame_a", "frame_b", "box_a", "box_b"))):
            self.tracks[(video, a, b)].append((box_a, box_b))
        self.with_tracks = sum(1 for p in self.pairs if self.tracks.get(p))

    def __getitem__(self, index: int):
        video, a, b = self.pairs[index]
        first, second = decode(self.store, video, a), decode(self.store, video, b)
        if first is None or second is None:
            return None
        candidates = self.tracks.get((video, a, b))
        box_a, box_b = random.choice(candidates) if candidates else (None, None)  # sample_track(x1, x2)
        x_q, box_q, seen_q = augment_with_box(self.transform, first, box_a)
        x_k, box_k, seen_k = augment_with_box(self.transform, second, box_b)
        return (x_q, x_k, box_q, box_k, torch.tensor(seen_q and seen_k)), 0
