"""Region stages of the video pipeline: region features, unsupervised tracks, ground-truth tracks.

Three more cached stages (``datasets.video.stages``) after frames, pairs and proposals:

4. ``region_features`` (Ray Data batch inference in an actor pool, a GPU per actor when
   the cluster has GPUs): a feature function run on every chunk frame and its proposals,
   one row per frame with a ``(num_boxes, dim)`` float16 matrix. The function comes from
   the caller (the trainables room builds it from a model; this room never imports
   models): ``features_factory()`` returns ``fn(images, boxes) -> [array (n_i, dim)]``,
   and ``model_key`` (a digest of the weights and the pooling) goes into the stage key.
   Keyed by the model key and the proposals stage.
5. ``tracks`` (track linking, ``datasets.video.tracks``; Appendix B, Eq. 4 and 5):
   per chunk, every region of frame i (i mod k == 0) is matched to the end of its best
   track in frame i + k and kept when the per-step track score is above the threshold.
   Keyed by ``frame_gap``, ``track_threshold`` and the features stage: a threshold sweep
   recomputes only this stage. It also scores the kept pairs against the annotated boxes
   where the source has them (``tracks/precision``, ``tracks/recall``, chance precision).
6. ``gt_tracks``: the pairs of annotated boxes (z_i, z_{i+k}), for the ground-truth tracks
   method. Keyed by ``frame_gap`` and the frames stage.

Both track tables share :data:`TRACK_SCHEMA`: ``video``, ``chunk``, ``offset_a/b``,
``frame_a/b``, ``box_a/b`` (x, y, w, h in full-resolution pixels), ``score``.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasets.placement import cpu_stage_args
from datasets.video.pipeline import (
    FRAME_SCHEMA,
    PROPOSAL_SCHEMA,
    PipelineResult,
    ensure_ray,
    frame_row_groups,
    read_stage_table,
)
from datasets.video.stages import StageResult, run_stage, stages_root
from datasets.video.tracks import chunk_track_pairs, ground_truth_pairs, precision_recall, track_precision_recall

log = logging.getLogger(__name__)

FEATURES_VERSION = 1
TRACKS_VERSION = 1
GT_TRACKS_VERSION = 1

FEATURE_SCHEMA = pa.schema([
    ("video", pa.string()), ("chunk", pa.int32()), ("chunk_offset", pa.int32()), ("frame_index", pa.int32()),
    ("num_boxes", pa.int32()), ("dim", pa.int32()),
    ("features", pa.binary()),  # float16, row-major (num_boxes, dim)
])

TRACK_SCHEMA = pa.schema([
    ("video", pa.string()), ("chunk", pa.int32()), ("offset_a", pa.int32()), ("offset_b", pa.int32()),
    ("frame_a", pa.int32()), ("frame_b", pa.int32()),
    ("box_a", pa.list_(pa.float64(), 4)), ("box_b", pa.list_(pa.float64(), 4)),  # x, y, w, h
    ("score", pa.float32()),
])

FeatureFn = Callable[[list[np.ndarray], list[np.ndarray]], list[np.ndarray]]


# --------------------------------------------------------------------------- region features


class RegionFeatureActor:
    """Ray Data actor: the feature function on the chunk frames of frames-stage row groups.

    Like the proposal actors it reads its Parquet row groups itself (a read operator
    would wait forever for a CPU that the pool holds). Frames are decoded as RGB.
    """

    def __init__(self, features_factory: Callable[[], FeatureFn], proposals_folder: str):
        import cv2

        cv2.setNumThreads(1)
        self.fn = features_factory()
        self.proposals_folder = proposals_folder

    def __call__(self, batch: pa.Table) -> pa.Table:
        import cv2

        out = []
        for unit in batch.to_pylist():
            frames = pq.ParquetFile(unit["path"]).read_row_group(
                unit["row_group"], columns=["row", "video", "chunk", "chunk_offset", "frame_index", "jpeg", "problem"])
            frames = [r for r in frames.to_pylist() if r["row"] == "frame" and r["problem"] is None and r["chunk"] >= 0]
            if not frames:
                continue
            videos = sorted({r["video"] for r in frames})
            proposals = pq.ParquetDataset(self.proposals_folder, filters=[("video", "in", videos)]).read(
                columns=["video", "frame_index", "boxes"]).to_pylist()
            boxes_of = {(p["video"], p["frame_index"]): np.asarray(p["boxes"], np.float32).reshape(-1, 4)
                        for p in proposals}
            images, boxes, rows = [], [], []
            for row in frames:
                image = cv2.imdecode(np.frombuffer(row["jpeg"], np.uint8), cv2.IMREAD_COLOR)
                if image is None:
                    continue  # counted by the frames stage's checks when it was stored; nothing to pool here
                images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                boxes.append(boxes_of.get((row["video"], row["frame_index"]), np.zeros((0, 4), np.float32)))
                rows.append(row)
            for row, feats in zip(rows, self.fn(images, boxes)):
                feats = np.asarray(feats, np.float16)
                out.append({"video": row["video"], "chunk": row["chunk"], "chunk_offset": row["chunk_offset"],
                            "frame_index": row["frame_index"], "num_boxes": int(feats.shape[0]),
                            "dim": int(feats.shape[1]) if feats.ndim == 2 else 0, "features": feats.tobytes()})
        return pa.Table.from_pylist(out, schema=FEATURE_SCHEMA)


def compute_region_features(frames: StageResult, proposals: StageResult, features_factory: Callable[[], FeatureFn],
                            data: Path, actors: int = 0) -> tuple[dict[str, int], list[str]]:
    import ray

    ensure_ray()
    data.mkdir(parents=True, exist_ok=True)
    units = frame_row_groups(frames.data)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    size = actors or (gpus or max(1, int(ray.cluster_resources().get("CPU", 1))))
    if units:
        dataset = ray.data.from_items(units, override_num_blocks=len(units))
        dataset = dataset.map_batches(
            RegionFeatureActor,
            fn_constructor_kwargs=dict(features_factory=features_factory, proposals_folder=str(proposals.data)),
            batch_size=1, batch_format="pyarrow", num_cpus=1, num_gpus=1 if gpus else 0,
            compute=ray.data.ActorPoolStrategy(size=size),
            **({} if gpus else cpu_stage_args()),  # CPU actors stay off GPU nodes (datasets.placement)
        )
        dataset.write_parquet(str(data), ray_remote_args={"num_cpus": 0})
    table = read_stage_table(data, ["num_boxes", "dim"], FEATURE_SCHEMA)
    dims = set(table["dim"].to_pylist()) - {0}
    return {"feature_frames": len(table), "region_features": int(pa.compute.sum(table["num_boxes"]).as_py() or 0),
            "feature_dim": max(dims, default=0)}, []


def run_region_features_stage(pipeline: PipelineResult, features_factory: Callable[[], FeatureFn], model_key: str,
                              cache: str = "", actors: int = 0) -> StageResult:
    """Region features of every chunk frame's proposals, keyed by ``model_key`` and the proposals stage."""
    frames, proposals = pipeline.stage("frames"), pipeline.stage("proposals")
    return run_stage(stages_root(cache), "region_features", FEATURES_VERSION, {"model": model_key},
                     [frames.key, proposals.key],
                     lambda data: compute_region_features(frames, proposals, features_factory, data, actors))


# --------------------------------------------------------------------------- tracks


def _chunk_boxes(frames: StageResult) -> dict[tuple[str, int], dict[int, tuple[int, list | None]]]:
    """(video, chunk) -> offset -> (frame index, annotated box or None), for the good chunk frames."""
    table = read_stage_table(frames.data, ["row", "video", "chunk", "chunk_offset", "frame_index", "box", "problem"],
                             FRAME_SCHEMA)
    out: dict[tuple[str, int], dict[int, tuple[int, list | None]]] = defaultdict(dict)
    for row in table.to_pylist():
        if row["row"] == "frame" and row["problem"] is None and row["chunk"] >= 0:
            out[(row["video"], row["chunk"])][row["chunk_offset"]] = (row["frame_index"], row["box"])
    return out


def _track_rows(video: str, chunk: int, frames_of: dict, pairs, boxes_a, boxes_b) -> list[dict]:
    return [{"video": video, "chunk": chunk, "offset_a": int(a), "offset_b": int(b),
             "frame_a": frames_of[int(a)][0], "frame_b": frames_of[int(b)][0],
             "box_a": [float(v) for v in box_a], "box_b": [float(v) for v in box_b], "score": float(score)}
            for a, b, box_a, box_b, score in zip(pairs.offset_a, pairs.offset_b, boxes_a, boxes_b, pairs.score)]


def compute_tracks(frames: StageResult, proposals: StageResult, features: StageResult, chunk_frames: int,
                   frame_gap: int, threshold: float, data: Path) -> tuple[dict[str, int | float], list[str]]:
    """Link tracks chunk by chunk on the driver (a chunk at the paper's size takes ~0.15 s, BENCHMARKS.md)."""
    chunk_frames_of = _chunk_boxes(frames)
    feature_table = read_stage_table(features.data, None, FEATURE_SCHEMA)
    proposal_table = read_stage_table(proposals.data, ["video", "chunk", "chunk_offset", "boxes"], PROPOSAL_SCHEMA)
    feats: dict[tuple[str, int], dict[int, np.ndarray]] = defaultdict(dict)
    for row in feature_table.to_pylist():
        matrix = np.frombuffer(row["features"], np.float16).astype(np.float32)
        feats[(row["video"], row["chunk"])][row["chunk_offset"]] = matrix.reshape(row["num_boxes"], max(row["dim"], 1))
    regions: dict[tuple[str, int], dict[int, np.ndarray]] = defaultdict(dict)
    for row in proposal_table.to_pylist():
        regions[(row["video"], row["chunk"])][row["chunk_offset"]] = np.asarray(row["boxes"], np.float64).reshape(-1, 4)

    rows, problems = [], []
    totals = {"kept": 0.0, "correct": 0.0, "chance_pairs": 0.0, "trackable": 0.0, "recalled": 0.0}
    annotated_chunks = 0
    for key in sorted(feats):
        offsets = sorted(feats[key])
        if offsets != list(range(chunk_frames)):  # a skipped frame breaks the chain of Eq. 4
            problems.append(f"{key[0]} chunk {key[1]}: {chunk_frames - len(offsets)} frames without features; "
                            "no tracks through it")
            continue
        features_list = [feats[key][t] for t in offsets]
        pairs = chunk_track_pairs(features_list, frame_gap, threshold)
        boxes = [regions[key].get(t, np.zeros((0, 4))) for t in offsets]
        rows += _track_rows(key[0], key[1], chunk_frames_of[key], pairs,
                            [boxes[a][r] for a, r in zip(pairs.offset_a, pairs.region_a)],
                            [boxes[b][s] for b, s in zip(pairs.offset_b, pairs.region_b)])
        truth = [chunk_frames_of[key][t][1] for t in offsets]
        if any(box is not None for box in truth):
            annotated_chunks += 1
            counts = track_precision_recall(pairs, boxes, truth, frame_gap)
            totals = {k: totals[k] + counts[k] for k in totals}
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=TRACK_SCHEMA), data / "tracks.parquet")
    counters: dict[str, int | float] = {"track_pairs": len(rows), "tracked_chunks": len(feats) - len(problems),
                                        "annotated_chunks": annotated_chunks}
    if annotated_chunks:
        counters |= {k.split("/")[1]: v for k, v in precision_recall(totals).items()}
    return counters, problems


def run_tracks_stage(pipeline: PipelineResult, features: StageResult, chunk_frames: int, frame_gap: int,
                     threshold: float, cache: str = "") -> StageResult:
    """Unsupervised tracks at gap k above ``threshold``: keyed by both and the features stage only."""
    frames, proposals = pipeline.stage("frames"), pipeline.stage("proposals")
    return run_stage(stages_root(cache), "tracks", TRACKS_VERSION,
                     {"frame_gap": frame_gap, "track_threshold": threshold, "chunk_frames": chunk_frames},
                     [features.key],
                     lambda data: compute_tracks(frames, proposals, features, chunk_frames, frame_gap, threshold, data))


def compute_gt_tracks(frames: StageResult, chunk_frames: int, frame_gap: int, data: Path) -> tuple[dict[str, int], list[str]]:
    rows = []
    for (video, chunk), frames_of in sorted(_chunk_boxes(frames).items()):
        truth = [frames_of.get(t, (None, None))[1] for t in range(chunk_frames)]
        for a, b in ground_truth_pairs(truth, frame_gap):
            rows.append({"video": video, "chunk": chunk, "offset_a": a, "offset_b": b, "frame_a": frames_of[a][0],
                         "frame_b": frames_of[b][0], "box_a": list(map(float, truth[a])),
                         "box_b": list(map(float, truth[b])), "score": 1.0})
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=TRACK_SCHEMA), data / "tracks.parquet")
    return {"track_pairs": len(rows)}, []


def run_gt_tracks_stage(pipeline: PipelineResult, chunk_frames: int, frame_gap: int, cache: str = "") -> StageResult:
    """Pairs of annotated boxes (z_i, z_{i+k}) of every chunk."""
    frames = pipeline.stage("frames")
    return run_stage(stages_root(cache), "gt_tracks", GT_TRACKS_VERSION,
                     {"frame_gap": frame_gap, "chunk_frames": chunk_frames}, [frames.key],
                     lambda data: compute_gt_tracks(frames, chunk_frames, frame_gap, data))


def read_tracks(stage: StageResult) -> pa.Table:
    return read_stage_table(stage.data, None, TRACK_SCHEMA)


# --------------------------------------------------------------------------- frames for training


class FrameStore:
    """JPEG bytes of a frames stage by (video, frame index), read a row group at a time.

    Holds only an index in memory (the paper's 7.2M frames would not fit); the last few
    row groups read are cached, which suits a shuffled sampler poorly but costs nothing
    for the small sets a laptop trains on (row groups are 32 frames).
    """

    def __init__(self, frames: StageResult):
        self.folder = frames.data
        self.index: dict[tuple[str, int], tuple[str, int, int]] = {}
        for unit in frame_row_groups(frames.data):
            group = pq.ParquetFile(unit["path"]).read_row_group(unit["row_group"], columns=["row", "video", "frame_index",
                                                                                             "problem"])
            for position, row in enumerate(group.to_pylist()):
                if row["row"] == "frame" and row["problem"] is None:
                    self.index[(row["video"], row["frame_index"])] = (unit["path"], unit["row_group"], position)
        self._groups: dict[tuple[str, int], list[bytes]] = {}

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self.index

    def jpeg(self, video: str, frame_index: int) -> bytes:
        path, group, position = self.index[(video, frame_index)]
        if (path, group) not in self._groups:
            if len(self._groups) >= 64:
                self._groups.pop(next(iter(self._groups)))
            self._groups[(path, group)] = pq.ParquetFile(path).read_row_group(group, columns=["jpeg"])["jpeg"].to_pylist()
        return self._groups[(path, group)][position]

    def __getstate__(self):  # DataLoader worker processes re-read row groups themselves
        return {"folder": self.folder, "index": self.index, "_groups": {}}
