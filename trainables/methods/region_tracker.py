"""Region Tracker (paper Sec. 5, Appendix B, Algorithm 1 with ``use_tracks``).

Frame Temporal Invariance plus a region-pair loss on regions tracked from z_i to
z_{i+k} without supervision:

1. the selective-search regions of every chunk frame (the pipeline's ``proposals``);
2. their features: ROI-aligned layer3 of the baseline model (``tracker_weights``: a
   checkpoint of ``mocov2_frames`` in the paper; "" uses a randomly initialised
   ``arch`` drawn from ``tracker_seed``, which Sec. 5 allows: "any unsupervised feature
   representation can be used"), the ``region_features`` stage;
3. tracks: ``matching="chain"`` (default) scores every chain of regions by Eq. 4 and 5 on
   per-frame centred features; ``"greedy"`` matches each region to its nearest region
   of the next frame, recursively (Sec. 5), on the raw features, scoring the track by
   the product of its Eq. 5 matches (``datasets.video.tracks``). Pairs above
   ``track_threshold`` (per-step score, in [0, 1)), the ``tracks`` stage; a threshold or
   matching sweep recomputes only this stage;
4. training: loss = 0.5 x frame loss + 0.5 x region loss, region embeddings by ROI-align
   on layer3 then layer4, pooling and head, region keys enqueued into the frame keys'
   queue (``trainables.region_moco``, which says how the queue is shared).

Reports ``tracks/pairs`` and, where the source has boxes, ``tracks/precision``,
``tracks/recall`` and ``tracks/chance_precision`` (a kept pair is correct when both of
its regions overlap the annotated box at IoU >= 0.5).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn
from torch.utils.data import Dataset

from datasets.registry import ReportColumn
from trainables.methods.base import METHODS, StepOutput
from trainables.methods.fti import FrameTemporalInvariance

log = logging.getLogger(__name__)

TRACK_METRICS = {"track_pairs": "tracks/pairs", "precision": "tracks/precision", "recall": "tracks/recall",
                 "chance_precision": "tracks/chance_precision"}


@dataclass(frozen=True)
class RegionPairsMethod(FrameTemporalInvariance):
    """Frame pairs plus one region pair each from a track stage (not registered itself):
    the region branch, the 0.5 / 0.5 loss and the shared queue of Algorithm 1."""

    # The track stage's figures (TRACK_METRICS), shown in the video tables.
    columns: ClassVar[tuple[ReportColumn, ...]] = (
        ReportColumn(("tracks/pairs",), "track pairs", "pairs", digits=0, percent=False),
        ReportColumn(("tracks/precision",), "track precision", "prec", digits=3, percent=False),
        ReportColumn(("tracks/chance_precision",), "chance precision", "chance", digits=3, percent=False),
        ReportColumn(("tracks/recall",), "track recall", "recall", digits=3, percent=False))

    # ROI-align cells per side of the region embeddings in training. layer4 halves them, and
    # its batch norm trains on the step's regions only: at 2 (1x1 after layer4) it normalises
    # one value per region, and with 2 (3) regions in a small batch the gradient reaching
    # conv1 is 51-447x (2-9x) the frame loss's (tests/test_video_methods.py); 4 keeps it below.
    roi_size: int = 4
    region_weight: float = 0.5  # Algorithm 1: loss = 0.5 x frame + 0.5 x region

    def problems(self, trial: Any) -> list[str]:
        out = super().problems(trial)
        if self.roi_size < 1:
            out.append(f"roi_size={self.roi_size} must be at least 1")
        if not 0.0 <= self.region_weight <= 1.0:
            out.append(f"region_weight={self.region_weight} must be in [0, 1]")
        if self.adversarial_weight:  # RegionMoCo's forward has no adversarial queries
            out.append(f"adversarial_weight={self.adversarial_weight}: {self.name} has no adversarial "
                       "contrastive examples (the region branch does not perturb); keep it 0")
        return out

    def track_stage(self, trial: Any):
        raise NotImplementedError

    def build_model(self, trial: Any) -> nn.Module:
        from trainables.region_moco import RegionMoCo

        return RegionMoCo(arch=trial.arch, dim=self.dim, queue_size=self.queue_size, momentum=self.momentum,
                          temperature=self.temperature, shuffle_bn_groups=self.shuffle_bn_groups,
                          roi_size=self.roi_size, region_weight=self.region_weight)

    def prepare(self, trial: Any) -> dict[str, float]:
        counters = self.track_stage(trial).counters
        if not counters.get("track_pairs"):
            log.warning("%s: no region pair kept (frame_gap=%d%s): the region loss is 0 and this trains as "
                        "Frame Temporal Invariance", self.name, self.frame_gap,
                        f", track_threshold={getattr(self, 'track_threshold')}" if hasattr(self, "track_threshold") else "")
        return super().prepare(trial) | {name: float(counters[key]) for key, name in TRACK_METRICS.items()
                                         if key in counters}

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        from datasets.video.pipeline import PAIR_SCHEMA, read_stage_table
        from datasets.video.regions import read_tracks
        from trainables.augment import mocov2_transform
        from trainables.video_data import TrackedFramePairs

        pairs = read_stage_table(self.pipeline(trial).stage("pairs").data, None, PAIR_SCHEMA)
        view = mocov2_transform(int(trial.image_size), (self.crop_scale_min, self.crop_scale_max))
        return TrackedFramePairs(self.frame_store(trial), pairs, read_tracks(self.track_stage(trial)), view)

    def training_step(self, model: nn.Module, inputs: Any, labels: Tensor) -> StepOutput:
        im_q, im_k, box_q, box_k, valid = inputs
        out = model(im_q, im_k, box_q, box_k, valid)
        return StepOutput(out.loss, {"frame_loss": out.frame_loss, "region_loss": out.region_loss})


@METHODS.register
@dataclass(frozen=True)
class RegionTracker(RegionPairsMethod):
    """``method=region_tracker``: frame pairs plus unsupervised region tracks."""

    name: ClassVar[str] = "region_tracker"
    pipeline_stages: ClassVar[tuple[str, ...]] = ("frames", "pairs", "proposals")  # proposals: its tracks' regions
    # Per-step track score a kept pair must exceed, in [0, 1). The score's scale follows the
    # videos: on the default synthetic videos (clutter tiles of 0.25 frame, bars fixed to the
    # world) chain tracks at k = 5 keep none above 0.25 and 1,719 / 1,812 pairs above 0.17 at
    # 6.3x / 8.0x chance precision (video seeds 0 / 1; tests/test_track_precision.py); 0.25
    # was chosen on the first videos, whose frame-fixed bar it kept 171 pairs of at 6.5x.
    track_threshold: float = 0.17
    tracker_weights: str = ""  # baseline checkpoint for the track features ("" = random init)
    tracker_seed: int = 0  # the random tracker's weights when tracker_weights is ""
    tracker_roi_size: int = 2  # ROI-align cells per side of the track features
    matching: str = "chain"  # "chain" (Eq. 4, centred) or "greedy" (Sec. 5, raw); datasets.video.tracks

    def problems(self, trial: Any) -> list[str]:
        from datasets.video.tracks import MATCHINGS  # here: the tracks module pulls in OpenCV

        out = super().problems(trial)
        if not 0.0 <= self.track_threshold < 1.0:
            out.append(f"track_threshold={self.track_threshold} must be in [0, 1) (per-step score of Eq. 4)")
        if self.tracker_weights and not Path(self.tracker_weights).expanduser().is_file():
            out.append(f"tracker_weights={self.tracker_weights!r} is not a file")
        if self.tracker_roi_size < 1:
            out.append(f"tracker_roi_size={self.tracker_roi_size} must be at least 1")
        if self.matching not in MATCHINGS:
            out.append(f"matching={self.matching!r} must be one of {', '.join(MATCHINGS)}")
        return out

    def feature_function(self, trial: Any):
        from trainables.regions import Layer3RegionFeatures

        weights = str(Path(self.tracker_weights).expanduser()) if self.tracker_weights else ""
        return Layer3RegionFeatures(arch=trial.arch, weights=weights, seed=self.tracker_seed,
                                    roi_size=self.tracker_roi_size)

    def feature_stage(self, trial: Any):
        """The ``region_features`` stage the tracks are linked from (built or reused)."""
        from datasets.video.regions import run_region_features_stage

        features = self.feature_function(trial)
        return run_region_features_stage(self.pipeline(trial), features, features.key(), str(trial.data_cache),
                                         use_gpu=trial.use_gpu)

    def track_stage(self, trial: Any):
        from datasets.video.regions import run_tracks_stage

        return run_tracks_stage(self.feature_stage(trial), self.source(trial).chunk_frames, self.frame_gap,
                                self.track_threshold, str(trial.data_cache), self.matching)
