"""Video preprocessing on Ray Data: frames, chunks, frame pairs and selective-search proposals.

The paper's video half (Purushwalkam & Gupta 2020, Sec. 5 and Appendix B) pretrains on
TrackingNet: each video cut into 4 chunks of 60 frames, 3 uniformly spaced frames per
video for the baseline, frame pairs (z_i, z_{i+k}) for Frame Temporal Invariance, and
the top 300 selective-search regions of every chunk frame for the Region Tracker.
Three cached stages (``datasets.video.stages``) build that; a run computes only the stages
it is asked for (``stages``: a method's ``pipeline_stages``, the ones it reads):

1. ``frames`` (Ray Data tasks, one video per task): plan chunks and baseline frames from
   the frame count, decode those frames once and store them as JPEG bytes in Parquet
   with their provenance. Unreadable videos and frames, videos shorter than one chunk
   and malformed annotation lines are skipped and counted.
2. ``pairs`` (index logic on the frames table's small columns): the frame pairs at gap
   ``frame_gap``.
3. ``proposals`` (Ray Data actor pool, one selective-search object per actor): boxes
   of every chunk frame, computed on a shrunk copy and mapped back to full resolution.

The command that runs these stages as a sweep would (``python -m orchestrator.video_pipeline``)
lives with the other commands in ``orchestrator``: it types a trial as a sweep does.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datasets.placement import actor_pool, cpu_stage_args
from datasets.ray_connection import init_ray
from datasets.video.chunks import baseline_frame_indices, chunk_frame_indices, frame_pair_offsets
from datasets.video.config import SYNTHETIC_SOURCE, VideoPipelineConfig
from datasets.video.proposals import SelectiveSearch
from datasets.video.sources import OpenedVideo, VideoSource, check_sources, discover_videos
from datasets.video.stages import StageResult, run_stage, stages_root

log = logging.getLogger(__name__)

# Bump a stage's version when its output changes for the same parameters.
FRAMES_VERSION = 1
PAIRS_VERSION = 1
PROPOSALS_VERSION = 1
PIPELINE_STAGES = ("frames", "pairs", "proposals")  # pairs and proposals read frames
MAX_PROBLEMS_KEPT = 1000
FRAME_ROW_GROUP = 32  # frames per Parquet row group: the unit of work of a proposal actor

FRAME_SCHEMA = pa.schema([
    ("row", pa.string()),  # "frame": one decoded frame; "video": one per video (its plan, or why it was skipped)
    ("video", pa.string()),
    ("chunk", pa.int32()),  # -1: a baseline frame outside every chunk
    ("chunk_offset", pa.int32()),  # position within the chunk, -1 outside
    ("baseline", pa.bool_()),
    ("frame_index", pa.int32()),  # position in the video, 0-based
    ("frame_number", pa.int32()),  # number in the source (TrackingNet file name; annotation line - 1)
    ("source_path", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("box", pa.list_(pa.float64())),  # annotated x, y, w, h; null when none (variable-size: Parquet round-trips nulls)
    ("jpeg", pa.binary()),
    ("num_frames", pa.int32()),
    ("num_chunks", pa.int32()),
    ("bad_annotation_lines", pa.int32()),
    ("problem", pa.string()),  # null for good rows; else why the frame or video was skipped
])

PAIR_SCHEMA = pa.schema([
    ("video", pa.string()), ("chunk", pa.int32()), ("offset_a", pa.int32()), ("offset_b", pa.int32()),
    ("frame_a", pa.int32()), ("frame_b", pa.int32()), ("source_path_a", pa.string()),
    ("source_path_b", pa.string()), ("gap", pa.int32()),
])

PROPOSAL_SCHEMA = pa.schema([
    ("video", pa.string()),
    ("chunk", pa.int32()),
    ("chunk_offset", pa.int32()),
    ("frame_index", pa.int32()),
    ("source_path", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("num_boxes", pa.int32()),
    ("boxes", pa.list_(pa.list_(pa.int32(), 4))),  # x, y, w, h in full-resolution pixels, best first
])


# --------------------------------------------------------------------------- frames


def _video_row(source: VideoSource, num_frames: int = 0, num_chunks: int = 0, bad_lines: int = 0,
               problem: str | None = None) -> dict:
    return {"row": "video", "video": source.video, "chunk": -1, "chunk_offset": -1, "baseline": False,
            "frame_index": -1, "frame_number": -1, "source_path": source.path, "num_frames": num_frames,
            "num_chunks": num_chunks, "bad_annotation_lines": bad_lines, "problem": problem}


def video_frame_rows(source: VideoSource, video_chunks: int, chunk_frames: int, baseline_frames: int,
                     jpeg_quality: int) -> list[dict]:
    """The rows of :data:`FRAME_SCHEMA` for one video: its chunk and baseline frames, then a video row.

    Never raises for bad data: an unopenable video or one shorter than one chunk gives
    only a video row with ``problem`` set; an unreadable frame gives a frame row with
    ``problem`` set and no ``jpeg``.
    """
    try:
        opened = OpenedVideo(source)
    except Exception as error:  # a bad video must not stop the run; the row says what happened
        return [_video_row(source, problem=f"{source.path}: cannot read video: {type(error).__name__}: {error}")]
    count, bad_lines = opened.num_frames, opened.bad_annotation_lines
    for problem in opened.problems:
        log.warning("%s", problem)
    if count == 0:
        problem = opened.problems[-1] if opened.problems else f"{source.path}: no frames"
        return [_video_row(source, 0, 0, bad_lines, problem)]
    if count < chunk_frames:
        return [_video_row(source, count, 0, bad_lines,
                           f"{source.path}: {count} frames, shorter than one chunk of {chunk_frames}")]
    chunks = chunk_frame_indices(count, video_chunks, chunk_frames)
    place = {index: (c, offset) for c, indices in enumerate(chunks) for offset, index in enumerate(indices)}
    baseline = set(baseline_frame_indices(count, baseline_frames))
    rows = []
    try:
        for frame in opened.read(sorted(set(place) | baseline)):
            chunk, offset = place.get(frame.index, (-1, -1))
            row = {"row": "frame", "video": source.video, "chunk": chunk, "chunk_offset": offset,
                   "baseline": frame.index in baseline, "frame_index": frame.index,
                   "frame_number": opened.frame_number(frame.index), "source_path": frame.source_path,
                   "box": opened.box(frame.index), "bad_annotation_lines": 0}
            if frame.image is None:
                rows.append({**row, "problem": frame.problem})
                continue
            encoded = frame.encoded  # a JPEG file's own bytes: stored as they are, no re-encoding loss
            if encoded is None:
                ok, buffer = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
                encoded = buffer.tobytes() if ok else None
            height, width = frame.image.shape[:2]
            rows.append({**row, "width": width, "height": height, "jpeg": encoded,
                         "problem": None if encoded else f"{frame.source_path}: frame {frame.index} does not encode"})
    except Exception as error:  # a decoder failing mid-video: keep what decoded, say why the rest is missing
        rows.append({"row": "frame", "video": source.video, "chunk": -1, "chunk_offset": -1, "baseline": False,
                     "frame_index": -1, "frame_number": -1, "source_path": source.path,
                     "problem": f"{source.path}: decoding stopped: {type(error).__name__}: {error}"})
    rows.append(_video_row(source, count, len(chunks), bad_lines))
    return rows


def decode_frames_batch(batch: pa.Table, video_chunks: int, chunk_frames: int, baseline_frames: int,
                        jpeg_quality: int) -> pa.Table:
    """Ray Data ``map_batches`` function: videos (rows of :class:`VideoSource`) to frame rows."""
    cv2.setNumThreads(1)  # one task per core already
    rows = []
    for item in batch.to_pylist():
        rows += video_frame_rows(VideoSource(**item), video_chunks, chunk_frames, baseline_frames, jpeg_quality)
    return pa.Table.from_pylist(rows, schema=FRAME_SCHEMA)


def read_stage_table(folder: Path, columns: list[str] | None = None, schema: pa.Schema | None = None) -> pa.Table:
    """A stage's Parquet files as one table (an empty table when the stage wrote none)."""
    files = sorted(Path(folder).glob("*.parquet")) if Path(folder).is_dir() else []
    if not files:
        empty = (schema or pa.schema([])).empty_table()
        return empty.select(columns) if columns else empty
    return pq.ParquetDataset(files, schema=schema).read(columns=columns)


def frame_counters(table: pa.Table) -> tuple[dict[str, int], list[str]]:
    """Counts of the frames stage and the problems it met, from its stored rows."""
    rows = table.to_pydict()
    videos = [i for i, kind in enumerate(rows["row"]) if kind == "video"]
    frames = [i for i, kind in enumerate(rows["row"]) if kind == "frame"]
    good = [i for i in frames if rows["problem"][i] is None]
    counters = {
        "videos": len(videos),
        "skipped_videos": sum(rows["problem"][i] is not None for i in videos),
        "chunks": sum(rows["num_chunks"][i] or 0 for i in videos),
        "frames": len(good),
        "chunk_frames": sum(rows["chunk"][i] >= 0 for i in good),
        "baseline_frames": sum(bool(rows["baseline"][i]) for i in good),
        "skipped_frames": len(frames) - len(good),
        "skipped_annotation_lines": sum(rows["bad_annotation_lines"][i] or 0 for i in videos),
    }
    problems = sorted(p for p in rows["problem"] if p is not None)[:MAX_PROBLEMS_KEPT]
    return counters, problems


def compute_frames(videos: list[VideoSource], config: VideoPipelineConfig, data: Path,
                   num_cpus: int | None = None) -> tuple[dict[str, int], list[str]]:
    import ray

    check_sources(videos)  # a malformed GOT-10k root is refused here, before any Ray work
    init_ray(num_cpus)  # started only when a stage must be computed: a fully cached run needs no Ray
    dataset = ray.data.from_items([asdict(v) for v in videos], override_num_blocks=max(1, min(len(videos), 2000)))
    dataset = dataset.map_batches(
        decode_frames_batch, batch_size=1, batch_format="pyarrow",
        fn_kwargs=dict(video_chunks=config.video_chunks, chunk_frames=config.chunk_frames,
                       baseline_frames=config.baseline_frames_per_video, jpeg_quality=config.jpeg_quality),
        **cpu_stage_args(),  # decoding stays off GPU nodes (datasets.placement)
    )
    data.mkdir(parents=True, exist_ok=True)
    dataset.write_parquet(str(data), row_group_size=FRAME_ROW_GROUP)
    columns = ["row", "chunk", "baseline", "num_chunks", "bad_annotation_lines", "problem"]
    return frame_counters(read_stage_table(data, columns, FRAME_SCHEMA))


# --------------------------------------------------------------------------- pairs


def frame_pairs_table(frames: pa.Table, chunk_frames: int, gap: int) -> pa.Table:
    """Pairs (z_i, z_{i+k}), i mod k == 0, of the decoded chunk frames in ``frames`` (both present)."""
    offsets = frame_pair_offsets(chunk_frames, gap)
    present = {}
    for video, chunk, offset, index, path in zip(*(frames[c].to_pylist() for c in
                                                   ("video", "chunk", "chunk_offset", "frame_index", "source_path"))):
        present[(video, chunk, offset)] = (index, path)
    columns: dict[str, list] = {name: [] for name in PAIR_SCHEMA.names}
    for video, chunk in sorted({(video, chunk) for video, chunk, _ in present}):
        for a, b in offsets:
            first, second = present.get((video, chunk, a)), present.get((video, chunk, b))
            if first is None or second is None:
                continue  # a skipped frame: its pairs go (counted by the stage)
            for name, value in zip(PAIR_SCHEMA.names, (video, chunk, a, b, first[0], second[0], first[1], second[1], gap)):
                columns[name].append(value)
    return pa.Table.from_pydict(columns, schema=PAIR_SCHEMA)


def compute_pairs(frames: StageResult, config: VideoPipelineConfig, data: Path) -> tuple[dict[str, int], list[str]]:
    # Index logic on four small columns (no JPEG bytes): 7.2M rows at the paper's scale fit the driver.
    table = read_stage_table(frames.data, ["row", "video", "chunk", "chunk_offset", "frame_index", "source_path",
                                           "problem"], FRAME_SCHEMA)
    good = pc.and_(pc.and_(pc.equal(table["row"], "frame"), table["problem"].is_null()), pc.greater_equal(table["chunk"], 0))
    pairs = frame_pairs_table(table.filter(good), config.chunk_frames, config.frame_gap)
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(pairs, data / "pairs.parquet")
    possible = frames.counters["chunks"] * len(frame_pair_offsets(config.chunk_frames, config.frame_gap))
    return {"frame_pairs": len(pairs), "pairs_missing_a_frame": possible - len(pairs)}, []


# --------------------------------------------------------------------------- proposals

PROPOSAL_INPUT_COLUMNS = ["row", "video", "chunk", "chunk_offset", "frame_index", "source_path", "width", "height",
                          "jpeg", "problem"]


class ProposalActor:
    """Ray Data actor: selective search on the chunk frames of row groups of the frames stage.

    Each input row names one Parquet row group, which the actor reads itself: a Ray Data
    read operator would need a CPU of its own, and with one actor per CPU it never gets
    one (the run hangs).
    """

    def __init__(self, max_regions: int, max_side: int):
        cv2.setNumThreads(1)  # one actor per core; OpenCV's own threads would oversubscribe
        self.search = SelectiveSearch(max_regions, max_side)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for unit in batch.to_pylist():
            frames = pq.ParquetFile(unit["path"]).read_row_group(unit["row_group"], columns=PROPOSAL_INPUT_COLUMNS)
            for row in frames.to_pylist():
                if row["row"] != "frame" or row["problem"] is not None or row["chunk"] < 0:
                    continue  # skipped frames are counted by the frames stage; baseline-only frames need no regions
                image = cv2.imdecode(np.frombuffer(row["jpeg"], np.uint8), cv2.IMREAD_COLOR)
                boxes = self.search(image)
                out.append({"video": row["video"], "chunk": row["chunk"], "chunk_offset": row["chunk_offset"],
                            "frame_index": row["frame_index"], "source_path": row["source_path"],
                            "width": row["width"], "height": row["height"], "num_boxes": len(boxes),
                            "boxes": boxes.tolist()})
        return pa.Table.from_pylist(out, schema=PROPOSAL_SCHEMA)


def frame_row_groups(folder: Path) -> list[dict]:
    """``{"path", "row_group"}`` of every row group of a stage's Parquet files."""
    units = []
    for path in sorted(Path(folder).glob("*.parquet")):
        units += [{"path": str(path), "row_group": i} for i in range(pq.ParquetFile(path).num_row_groups)]
    return units


def compute_proposals(frames: StageResult, config: VideoPipelineConfig, data: Path,
                      num_cpus: int | None = None) -> tuple[dict[str, int], list[str]]:
    import ray

    init_ray(num_cpus)
    data.mkdir(parents=True, exist_ok=True)
    units = frame_row_groups(frames.data)
    if units:
        dataset = ray.data.from_items(units, override_num_blocks=len(units))
        dataset = dataset.map_batches(
            ProposalActor, fn_constructor_kwargs=dict(max_regions=config.proposals_per_frame,
                                                      max_side=config.proposal_max_side),
            batch_size=1, batch_format="pyarrow", **actor_pool(config.proposal_actors).map_batches_args(),
        )
        # Writing is light: zero CPUs, so it never waits behind actors that hold every core.
        dataset.write_parquet(str(data), ray_remote_args={"num_cpus": 0})
    counts = read_stage_table(data, ["num_boxes"], PROPOSAL_SCHEMA)["num_boxes"].to_numpy()
    return {"proposal_frames": len(counts), "proposals": int(counts.sum()),
            "frames_below_R": int((counts < config.proposals_per_frame).sum())}, []


# --------------------------------------------------------------------------- the pipeline


@dataclass
class PipelineResult:
    """The stages of one run, in order, and where the source was."""

    source_root: Path
    source_key: str
    stages: list[StageResult] = field(default_factory=list)

    def stage(self, name: str) -> StageResult:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"video pipeline stage {name!r} was not run (ran: {', '.join(s.name for s in self.stages)}); "
                       "a method lists the stages it reads in its pipeline_stages")

    @property
    def computed(self) -> list[str]:
        """Names of the stages this run computed (the others were reused)."""
        return [s.name for s in self.stages if not s.reused]

    def metrics(self) -> dict[str, float]:
        """Counters under MLflow metric keys (``data/skipped_videos``, ``data/skipped_frames``, ...)."""
        merged: dict[str, float] = {}
        for stage in self.stages:
            merged.update({f"data/{k}": float(v) for k, v in stage.counters.items()})
        merged["data/stages_computed"] = float(len(self.computed))
        return merged

    def summary(self) -> str:
        return "\n".join([f"video pipeline on {self.source_root} ({self.source_key})"] + [s.summary() for s in self.stages])


def resolve_source(config: VideoPipelineConfig) -> tuple[Path, str]:
    """``(root, format)``: the synthetic videos (generated once into the cache) or the given path."""
    if config.source == SYNTHETIC_SOURCE:
        from datasets.synthetic.video import ensure_synthetic_trackingnet

        root = ensure_synthetic_trackingnet(config.synthetic_videos, config.synthetic_frames, config.synthetic_width,
                                            config.synthetic_height, config.seed, config.data_cache,
                                            background_motion=config.synthetic_background_motion,
                                            background_speed=config.synthetic_background_speed,
                                            background_tile=config.synthetic_background_tile,
                                            background_bar=config.synthetic_background_bar)
        return root, "trackingnet"
    return Path(config.source).expanduser().resolve(), config.source_format


def source_key(videos: list[VideoSource]) -> str:
    """A key of the source listing: video ids, paths and their size/modification fingerprints."""
    payload = json.dumps([asdict(v) for v in videos], sort_keys=True)
    return f"source-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def run_frames_stage(config: VideoPipelineConfig, videos: list[VideoSource], num_cpus: int | None = None) -> StageResult:
    """The frames stage of ``videos`` (reused when cached; a local Ray of ``num_cpus`` is started if needed)."""
    params = {"video_chunks": config.video_chunks, "chunk_frames": config.chunk_frames,
              "baseline_frames_per_video": config.baseline_frames_per_video, "jpeg_quality": config.jpeg_quality}
    return run_stage(stages_root(config.data_cache), "frames", FRAMES_VERSION, params, [source_key(videos)],
                     lambda data: compute_frames(videos, config, data, num_cpus))


def run_video_pipeline(config: VideoPipelineConfig, num_cpus: int | None = None,
                       echo: bool = True, stages: tuple[str, ...] = PIPELINE_STAGES) -> PipelineResult:
    """Run (or reuse) the ``stages`` for ``config`` (frames always: the others read it); print
    each stage's summary when ``echo``. A stage not named is neither computed nor read."""
    unknown = [name for name in stages if name not in PIPELINE_STAGES]
    if unknown:
        raise ValueError(f"unknown video pipeline stage(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(PIPELINE_STAGES)}")
    problems = config.validate()
    if problems:
        raise ValueError("invalid video pipeline config:\n  " + "\n  ".join(problems))
    root, source_format = resolve_source(config)
    videos = discover_videos(root, source_format)
    cache = stages_root(config.data_cache)
    result = PipelineResult(root, source_key(videos))

    def report(stage: StageResult) -> StageResult:
        result.stages.append(stage)
        if echo:
            print(stage.summary(), flush=True)
        return stage

    frames = report(run_frames_stage(config, videos, num_cpus))
    if "pairs" in stages:
        report(run_stage(cache, "pairs", PAIRS_VERSION, {"frame_gap": config.frame_gap, "chunk_frames": config.chunk_frames},
                         [frames.key], lambda data: compute_pairs(frames, config, data)))
    if "proposals" in stages:
        report(run_stage(cache, "proposals", PROPOSALS_VERSION,
                         {"proposals_per_frame": config.proposals_per_frame,
                          "proposal_max_side": config.proposal_max_side, "method": "opencv-selective-search-fast"},
                         [frames.key], lambda data: compute_proposals(frames, config, data, num_cpus)))
    return result
