"""Region stages of the video pipeline: region features, unsupervised tracks, ground-truth tracks.

Three more cached stages (``datasets.video.stages``) after frames, pairs and proposals:

4. ``region_features`` (Ray Data batch inference in an actor pool, a GPU per actor when
   the cluster has GPUs): a feature function run on every chunk frame and its proposals,
   one row per frame with a ``(num_boxes, dim)`` float16 matrix. The function comes from
   the caller (the trainables room builds it from a model; this room never imports
   models): ``features_factory()`` returns ``fn(images, boxes) -> [array (n_i, dim)]``,
   and ``model_key`` (a digest of the weights and the pooling) goes into the stage key.
   Keyed by the model key and the proposals stage.
   Each row also carries its frame's proposals and annotated box, so that a chunk's
   row set is all that track linking needs.
5. ``tracks`` (track linking, ``datasets.video.tracks``; Appendix B, Eq. 4 and 5):
   per chunk, every region of frame i (i mod k == 0) is matched to the end of its best
   track in frame i + k and kept when the per-step track score is above the threshold
   (``matching``: Eq. 4's centred chain, or Sec. 5's greedy nearest-region recursion).
   A Ray Data job: the feature rows are grouped by chunk (``groupby(["video",
   "chunk"]).map_groups``) and each chunk is linked by a CPU task, so no process holds
   more than one chunk's features (the paper's 120K chunks hold terabytes of them).
   Keyed by ``frame_gap``, ``track_threshold``, ``matching`` and the features stage: a threshold sweep
   recomputes only this stage. It also scores the kept pairs against the annotated boxes
   where the source has them (``tracks/precision``, ``tracks/recall``, chance precision).
6. ``gt_tracks``: the pairs of annotated boxes (z_i, z_{i+k}), for the ground-truth tracks
   method. Keyed by ``frame_gap`` and the frames stage.

Both track stages store one row per chunk (:data:`CHUNK_TRACKS_SCHEMA`: the chunk's
pairs as list columns, its counts, why it was left out); :func:`read_tracks` returns one
row per pair (:data:`TRACK_SCHEMA`: ``video``, ``chunk``, ``offset_a/b``, ``frame_a/b``,
``box_a/b`` (x, y, w, h in full-resolution pixels), ``score``).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datasets.placement import ActorPool, actor_pool, cpu_stage_args, gpu_actors, submitted_to_cluster
from datasets.ray_connection import init_ray
from datasets.video.pipeline import (
    FRAME_SCHEMA,
    PipelineResult,
    frame_row_groups,
    read_stage_table,
)
from datasets.video.stages import StageResult, run_stage, stages_root
from datasets.video.tracks import (
    MATCHINGS,
    chunk_track_pairs,
    ground_truth_pairs,
    precision_recall,
    track_precision_recall,
)

log = logging.getLogger(__name__)

FEATURES_VERSION = 2  # 2: proposals and annotated box in each row
TRACKS_VERSION = 2  # 2: one row per chunk, linked on Ray Data
GT_TRACKS_VERSION = 2

FEATURE_SCHEMA = pa.schema([
    ("video", pa.string()), ("chunk", pa.int32()), ("chunk_offset", pa.int32()), ("frame_index", pa.int32()),
    ("num_boxes", pa.int32()), ("dim", pa.int32()),
    ("features", pa.binary()),  # float16, row-major (num_boxes, dim)
    ("boxes", pa.list_(pa.list_(pa.int32(), 4))),  # the frame's proposals, one per feature row
    ("truth_box", pa.list_(pa.float64())),  # the annotated x, y, w, h; null when none
])

TRACK_SCHEMA = pa.schema([
    ("video", pa.string()), ("chunk", pa.int32()), ("offset_a", pa.int32()), ("offset_b", pa.int32()),
    ("frame_a", pa.int32()), ("frame_b", pa.int32()),
    ("box_a", pa.list_(pa.float64(), 4)), ("box_b", pa.list_(pa.float64(), 4)),  # x, y, w, h
    ("score", pa.float32()),
])

# One row per chunk: its pairs as list columns (TRACK_SCHEMA's pair columns), its counts.
_PAIR_COLUMNS = ("offset_a", "offset_b", "frame_a", "frame_b", "box_a", "box_b", "score")
CHUNK_TRACKS_SCHEMA = pa.schema([
    ("video", pa.string()), ("chunk", pa.int32()),
    ("problem", pa.string()),  # why the chunk has no tracks (a frame without features); null when linked
    ("annotated", pa.bool_()),  # the chunk has annotated boxes: its counts enter precision and recall
    ("num_pairs", pa.int32()),
    # track_precision_recall's counts (0 where not annotated)
    ("correct", pa.float64()), ("chance_pairs", pa.float64()), ("trackable", pa.float64()), ("recalled", pa.float64()),
] + [(name, pa.list_(TRACK_SCHEMA.field(name).type)) for name in _PAIR_COLUMNS])

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
                unit["row_group"], columns=["row", "video", "chunk", "chunk_offset", "frame_index", "box", "jpeg", "problem"])
            frames = [r for r in frames.to_pylist() if r["row"] == "frame" and r["problem"] is None and r["chunk"] >= 0]
            if not frames:
                continue
            videos = sorted({r["video"] for r in frames})
            proposals = pq.ParquetDataset(self.proposals_folder, filters=[("video", "in", videos)]).read(
                columns=["video", "frame_index", "boxes"]).to_pylist()
            boxes_of = {(p["video"], p["frame_index"]): p["boxes"] or [] for p in proposals}
            images, boxes, rows = [], [], []
            for row in frames:
                image = cv2.imdecode(np.frombuffer(row["jpeg"], np.uint8), cv2.IMREAD_COLOR)
                if image is None:
                    continue  # counted by the frames stage's checks when it was stored; nothing to pool here
                images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                boxes.append(boxes_of.get((row["video"], row["frame_index"]), []))
                rows.append(row)
            for row, frame_boxes, feats in zip(rows, boxes, self.fn(images, [np.asarray(b, np.float32).reshape(-1, 4)
                                                                            for b in boxes])):
                feats = np.asarray(feats, np.float16)
                out.append({"video": row["video"], "chunk": row["chunk"], "chunk_offset": row["chunk_offset"],
                            "frame_index": row["frame_index"], "num_boxes": int(feats.shape[0]),
                            "dim": int(feats.shape[1]) if feats.ndim == 2 else 0, "features": feats.tobytes(),
                            "boxes": frame_boxes, "truth_box": row["box"]})
        return pa.Table.from_pylist(out, schema=FEATURE_SCHEMA)


def region_feature_pool(use_gpu: bool, actors: int = 0) -> ActorPool:
    """The region-feature actors: one GPU each when the trial uses GPUs and the cluster has
    or may add some (`datasets.placement.gpu_actors`), at most `actors` (0: the default)."""
    return actor_pool(actors, gpu_actors(use_gpu, autoscaling=submitted_to_cluster()))


def compute_region_features(frames: StageResult, proposals: StageResult, features_factory: Callable[[], FeatureFn],
                            data: Path, actors: int = 0, use_gpu: bool = False) -> tuple[dict[str, int], list[str]]:
    import ray

    init_ray()
    data.mkdir(parents=True, exist_ok=True)
    units = frame_row_groups(frames.data)
    if units:
        dataset = ray.data.from_items(units, override_num_blocks=len(units))
        dataset = dataset.map_batches(
            RegionFeatureActor,
            fn_constructor_kwargs=dict(features_factory=features_factory, proposals_folder=str(proposals.data)),
            batch_size=1, batch_format="pyarrow", **region_feature_pool(use_gpu, actors).map_batches_args(),
        )
        dataset.write_parquet(str(data), ray_remote_args={"num_cpus": 0})
    table = read_stage_table(data, ["num_boxes", "dim"], FEATURE_SCHEMA)
    dims = set(table["dim"].to_pylist()) - {0}
    return {"feature_frames": len(table), "region_features": int(pa.compute.sum(table["num_boxes"]).as_py() or 0),
            "feature_dim": max(dims, default=0)}, []


def run_region_features_stage(pipeline: PipelineResult, features_factory: Callable[[], FeatureFn], model_key: str,
                              cache: str = "", actors: int = 0, use_gpu: bool = False) -> StageResult:
    """Region features of every chunk frame's proposals, keyed by ``model_key`` and the proposals stage
    (GPU actors with `use_gpu`: `region_feature_pool`)."""
    frames, proposals = pipeline.stage("frames"), pipeline.stage("proposals")
    return run_stage(stages_root(cache), "region_features", FEATURES_VERSION, {"model": model_key},
                     [frames.key, proposals.key],
                     lambda data: compute_region_features(frames, proposals, features_factory, data, actors, use_gpu))


# --------------------------------------------------------------------------- tracks


def link_chunk(rows: pa.Table, chunk_frames: int, frame_gap: int, threshold: float, matching: str = "chain") -> pa.Table:
    """One chunk's feature rows (any order) -> its one CHUNK_TRACKS_SCHEMA row (map_groups)."""
    frames = sorted(rows.to_pylist(), key=lambda r: r["chunk_offset"])
    video, chunk = frames[0]["video"], frames[0]["chunk"]
    out: dict = {"video": video, "chunk": chunk, "problem": None, "annotated": False, "num_pairs": 0,
                 "correct": 0.0, "chance_pairs": 0.0, "trackable": 0.0, "recalled": 0.0}
    out |= {name: [] for name in _PAIR_COLUMNS}
    offsets = [r["chunk_offset"] for r in frames]
    if offsets != list(range(chunk_frames)):  # a skipped frame breaks the chain of Eq. 4
        out["problem"] = (f"{video} chunk {chunk}: {chunk_frames - len(set(offsets))} frames without features; "
                          "no tracks through it")
        return pa.Table.from_pylist([out], schema=CHUNK_TRACKS_SCHEMA)
    features, boxes, truth = decode_chunk(frames)
    pairs = chunk_track_pairs(features, frame_gap, threshold, matching=matching)
    out |= {"num_pairs": len(pairs), "offset_a": pairs.offset_a.tolist(), "offset_b": pairs.offset_b.tolist(),
            "frame_a": [frames[a]["frame_index"] for a in pairs.offset_a],
            "frame_b": [frames[b]["frame_index"] for b in pairs.offset_b],
            "box_a": boxes_at(boxes, pairs.offset_a, pairs.region_a),
            "box_b": boxes_at(boxes, pairs.offset_b, pairs.region_b), "score": pairs.score.tolist()}
    if any(box is not None for box in truth):
        counts = track_precision_recall(pairs, boxes, truth, frame_gap)
        out |= {"annotated": True} | {k: counts[k] for k in ("correct", "chance_pairs", "trackable", "recalled")}
    return pa.Table.from_pylist([out], schema=CHUNK_TRACKS_SCHEMA)


def decode_chunk(frames: list[dict]) -> tuple[list[np.ndarray], list[np.ndarray], list[list[float] | None]]:
    """A chunk's FEATURE_SCHEMA rows, in frame order -> per-frame features, proposals, annotated box."""
    features = [np.frombuffer(r["features"], np.float16).astype(np.float32).reshape(r["num_boxes"], max(r["dim"], 1))
                for r in frames]
    boxes = [np.asarray(r["boxes"] or [], np.float64).reshape(-1, 4) for r in frames]
    return features, boxes, [r["truth_box"] for r in frames]


def boxes_at(boxes: list[np.ndarray], offsets: np.ndarray, regions: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in boxes[t][r]] for t, r in zip(offsets, regions)]


def compute_tracks(features: StageResult, chunk_frames: int, frame_gap: int, threshold: float,
                   data: Path, matching: str = "chain") -> tuple[dict[str, int | float], list[str]]:
    """Link every chunk's tracks as a Ray Data job: group the feature rows by chunk, one task per group."""
    import ray
    from ray.data.context import ShuffleStrategy

    init_ray()
    data.mkdir(parents=True, exist_ok=True)
    files = sorted(str(f) for f in Path(features.data).glob("*.parquet"))
    if files:
        dataset = ray.data.read_parquet(files, schema=FEATURE_SCHEMA)
        # Ray Data 2.60's default shuffle (SHUFFLE_V2) runs its map side in workers of their own
        # runtime environment, started for each job; the sort-based pull shuffle runs on the
        # ordinary worker pool: 26-27 s against 77-85 s for 40 chunks x 100 regions on 2 cores
        # (BENCHMARKS.md, "Track linking: the shuffle strategy").
        dataset.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        linked = dataset.groupby(["video", "chunk"]).map_groups(
            partial(link_chunk, chunk_frames=chunk_frames, frame_gap=frame_gap, threshold=threshold,
                    matching=matching),
            batch_format="pyarrow", num_cpus=1, **cpu_stage_args())
        linked.write_parquet(str(data), ray_remote_args={"num_cpus": 0})
    summary = read_stage_table(data, ["problem", "annotated", "num_pairs", "correct", "chance_pairs", "trackable",
                                      "recalled"], CHUNK_TRACKS_SCHEMA).to_pydict()
    problems = sorted(p for p in summary["problem"] if p is not None)
    annotated = [i for i, a in enumerate(summary["annotated"]) if a]
    counters: dict[str, int | float] = {"track_pairs": int(sum(summary["num_pairs"])),
                                        "tracked_chunks": len(summary["problem"]) - len(problems),
                                        "annotated_chunks": len(annotated)}
    if annotated:
        totals = {k: float(sum(summary[k][i] for i in annotated)) for k in ("correct", "chance_pairs", "trackable",
                                                                             "recalled")}
        totals["kept"] = float(sum(summary["num_pairs"][i] for i in annotated))
        counters |= {k.split("/")[1]: v for k, v in precision_recall(totals).items()}
    return counters, problems


def run_tracks_stage(features: StageResult, chunk_frames: int, frame_gap: int, threshold: float,
                     cache: str = "", matching: str = "chain") -> StageResult:
    """Unsupervised tracks at gap k above ``threshold`` by ``matching``: keyed by the three and
    the features stage only."""
    if matching not in MATCHINGS:
        raise ValueError(f"matching={matching!r}: expected one of {', '.join(MATCHINGS)}")
    return run_stage(stages_root(cache), "tracks", TRACKS_VERSION,
                     {"frame_gap": frame_gap, "track_threshold": threshold, "chunk_frames": chunk_frames,
                      "matching": matching},
                     [features.key],
                     lambda data: compute_tracks(features, chunk_frames, frame_gap, threshold, data, matching))


def compute_gt_tracks(frames: StageResult, chunk_frames: int, frame_gap: int, data: Path) -> tuple[dict[str, int], list[str]]:
    """On the driver: it reads only the frames stage's small columns, never images or features."""
    table = read_stage_table(frames.data, ["row", "video", "chunk", "chunk_offset", "frame_index", "box", "problem"],
                             FRAME_SCHEMA)
    chunks: dict[tuple[str, int], dict[int, tuple[int, list | None]]] = defaultdict(dict)
    for row in table.to_pylist():
        if row["row"] == "frame" and row["problem"] is None and row["chunk"] >= 0:
            chunks[(row["video"], row["chunk"])][row["chunk_offset"]] = (row["frame_index"], row["box"])
    out = []
    for (video, chunk), frames_of in sorted(chunks.items()):
        truth = [frames_of.get(t, (None, None))[1] for t in range(chunk_frames)]
        pairs = ground_truth_pairs(truth, frame_gap)
        out.append({"video": video, "chunk": chunk, "problem": None, "annotated": True, "num_pairs": len(pairs),
                    "correct": 0.0, "chance_pairs": 0.0, "trackable": 0.0, "recalled": 0.0,
                    "offset_a": [a for a, _ in pairs], "offset_b": [b for _, b in pairs],
                    "frame_a": [frames_of[a][0] for a, _ in pairs], "frame_b": [frames_of[b][0] for _, b in pairs],
                    "box_a": [list(map(float, truth[a])) for a, _ in pairs],
                    "box_b": [list(map(float, truth[b])) for _, b in pairs], "score": [1.0] * len(pairs)})
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(out, schema=CHUNK_TRACKS_SCHEMA), data / "tracks.parquet")
    return {"track_pairs": sum(row["num_pairs"] for row in out)}, []


def run_gt_tracks_stage(pipeline: PipelineResult, chunk_frames: int, frame_gap: int, cache: str = "") -> StageResult:
    """Pairs of annotated boxes (z_i, z_{i+k}) of every chunk."""
    frames = pipeline.stage("frames")
    return run_stage(stages_root(cache), "gt_tracks", GT_TRACKS_VERSION,
                     {"frame_gap": frame_gap, "chunk_frames": chunk_frames}, [frames.key],
                     lambda data: compute_gt_tracks(frames, chunk_frames, frame_gap, data))


def read_tracks(stage: StageResult) -> pa.Table:
    """A track stage's pairs, one row per pair (TRACK_SCHEMA), in (video, chunk) order."""
    chunks = read_stage_table(stage.data, None, CHUNK_TRACKS_SCHEMA)
    chunks = chunks.sort_by([("video", "ascending"), ("chunk", "ascending")])  # tasks finish in any order
    parent = pc.list_parent_indices(chunks["offset_a"])
    columns = {"video": pc.take(chunks["video"], parent), "chunk": pc.take(chunks["chunk"], parent)}
    columns |= {name: pc.list_flatten(chunks[name]) for name in _PAIR_COLUMNS}
    return pa.Table.from_pydict(columns, schema=TRACK_SCHEMA)


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
