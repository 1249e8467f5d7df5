"""Selective-search region proposals (Uijlings et al. 2013), OpenCV's fast mode.

The paper's Region Tracker (Appendix B) starts from the top 300 selective-search
regions of every frame. Selective search costs about 0.3-0.4 s per 320x240 frame on one
core and grows with the pixel count, so it runs on the frame shrunk to a configurable
longest side and the boxes are mapped back to the full frame.
"""
from __future__ import annotations

import ctypes

import cv2
import numpy as np

try:
    # OpenCV ranks regions by (C library rand()) x (hierarchy level), as the selective
    # search paper does; cv2.setRNGSeed does not reach it. Seeding rand() before every
    # frame makes a frame's top R the same whichever worker ran it and in what order.
    _C_SRAND = ctypes.CDLL(None).srand
except (OSError, AttributeError):  # not a POSIX C library: ranking stays as OpenCV leaves it
    _C_SRAND = None


def shrink_for_proposals(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float, float]:
    """``(small, sx, sy)``: ``image`` shrunk so its longest side is ``max_side`` (0 or larger: as is).

    ``sx``, ``sy`` map small-image pixels back: full x = small x * ``sx``.
    """
    height, width = image.shape[:2]
    if max_side <= 0 or max(height, width) <= max_side:
        return image, 1.0, 1.0
    factor = max_side / max(height, width)
    small_w, small_h = max(1, round(width * factor)), max(1, round(height * factor))
    small = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
    return small, width / small_w, height / small_h


def boxes_to_full_resolution(boxes: np.ndarray, sx: float, sy: float, width: int, height: int) -> np.ndarray:
    """Map ``(N, 4)`` ``x, y, w, h`` boxes of a shrunk image to the full ``width`` x ``height`` frame.

    Corners are scaled (a box's right edge is ``x + w``), rounded to whole pixels and
    clipped to the frame; boxes that end up empty are dropped. Returns int32 ``x, y, w, h``.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0 = np.clip(np.round(boxes[:, 0] * sx), 0, width)
    y0 = np.clip(np.round(boxes[:, 1] * sy), 0, height)
    x1 = np.clip(np.round((boxes[:, 0] + boxes[:, 2]) * sx), 0, width)
    y1 = np.clip(np.round((boxes[:, 1] + boxes[:, 3]) * sy), 0, height)
    keep = (x1 > x0) & (y1 > y0)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)[keep].astype(np.int32)


class SelectiveSearch:
    """Reusable selective search (one OpenCV object per worker; it is not thread-safe)."""

    def __init__(self, max_regions: int = 300, max_side: int = 160, ranking_seed: int = 0):
        if max_regions < 1:
            raise ValueError(f"max_regions must be >= 1, got {max_regions}")
        self.max_regions = max_regions
        self.max_side = max_side
        self.ranking_seed = ranking_seed
        self._search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        """Top ``max_regions`` boxes ``(n, 4)`` int32 ``x, y, w, h`` in ``image_bgr``'s pixels, best first."""
        height, width = image_bgr.shape[:2]
        small, sx, sy = shrink_for_proposals(image_bgr, self.max_side)
        self._search.setBaseImage(small)
        self._search.switchToSelectiveSearchFast()
        if _C_SRAND is not None:
            _C_SRAND(self.ranking_seed)
        rects = self._search.process()  # in OpenCV's (seeded pseudo-random) rank order: the first R are the top R
        if rects is None or len(rects) == 0:
            return np.zeros((0, 4), np.int32)
        return boxes_to_full_resolution(rects[: self.max_regions], sx, sy, width, height)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(A, B)`` of ``x, y, w, h`` boxes."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
                 - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
                 - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def recall_at_iou(ground_truth: list[np.ndarray], proposals: list[np.ndarray], threshold: float = 0.5) -> float:
    """Fraction of ground-truth boxes (one array per frame) covered by a proposal at IoU >= ``threshold``."""
    hits = total = 0
    for truth, boxes in zip(ground_truth, proposals):
        truth = np.asarray(truth).reshape(-1, 4)
        total += len(truth)
        if len(truth) and len(boxes):
            hits += int((box_iou(truth, boxes).max(axis=1) >= threshold).sum())
    return hits / total if total else float("nan")
