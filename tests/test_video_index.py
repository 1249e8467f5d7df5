"""Video index logic and readers on hand-made cases (no Ray): chunks, baseline frames,
frame pairs, TrackingNet/GOT-10k parsing, selective-search boxes."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from datasets.errors import DatasetFormatError
from datasets.video.chunks import baseline_frame_indices, chunk_frame_indices, chunk_starts, frame_pair_offsets
from datasets.sources.video import SyntheticVideo, VideoRoot
from datasets.video.config import SYNTHETIC_SOURCE, VideoPipelineConfig
from datasets.video.proposals import SelectiveSearch, box_iou, boxes_to_full_resolution, recall_at_iou, shrink_for_proposals
from datasets.video.sources import (
    OpenedVideo, detect_format, discover_trackingnet, discover_videos, parse_box_lines, trackingnet_frame_paths,
)
from datasets.video.stages import stage_key
from trainables.methods import METHODS

# ----------------------------------------------------------------------------- chunks


def test_chunks_spread_as_far_apart_as_the_video_allows():
    # 300 frames, 4 x 60: 60 spare frames shared out between 3 gaps of 20.
    assert chunk_starts(300, 4, 60) == [0, 80, 160, 240]
    # Exactly 4 x 60: back to back.
    assert chunk_starts(240, 4, 60) == [0, 60, 120, 180]
    # Room for 2 chunks only: first at the start, last ending at the last frame.
    assert chunk_starts(150, 4, 60) == [0, 90]
    # One chunk fits: centred.
    assert chunk_starts(100, 4, 60) == [20]
    # Shorter than one chunk: none.
    assert chunk_starts(59, 4, 60) == []
    assert chunk_starts(0, 4, 60) == []


def test_chunk_frame_indices_are_consecutive_disjoint_and_in_the_video():
    for frames in (60, 61, 119, 240, 241, 1000):
        chunks = chunk_frame_indices(frames, 4, 60)
        flat = [i for chunk in chunks for i in chunk]
        assert len(flat) == len(set(flat))
        assert all(chunk == list(range(chunk[0], chunk[0] + 60)) for chunk in chunks)
        assert 0 <= min(flat) and max(flat) < frames
        assert len(chunks) == min(4, frames // 60)
        if len(chunks) > 1:
            assert chunks[0][0] == 0 and chunks[-1][-1] == frames - 1


def test_baseline_frames_are_uniformly_spaced():
    assert baseline_frame_indices(300, 3) == [50, 150, 250]
    assert baseline_frame_indices(6, 3) == [1, 3, 5]
    assert baseline_frame_indices(2, 3) == [0, 1]
    assert baseline_frame_indices(10, 1) == [5]


def test_frame_pairs_at_gap_k():
    # (z_i, z_{i+k}) for i mod k == 0 inside a chunk of 60 frames.
    assert frame_pair_offsets(60, 10) == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50)]
    assert frame_pair_offsets(61, 10)[-1] == (50, 60)
    assert frame_pair_offsets(8, 3) == [(0, 3), (3, 6)]
    assert frame_pair_offsets(5, 1) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(ValueError):
        frame_pair_offsets(60, 0)


def _pipeline_config(**changes) -> VideoPipelineConfig:
    """The synthetic-video source's config at gap 5, with ``changes``."""
    return SyntheticVideo().pipeline_config(SimpleNamespace(data_cache=""), 5).replace(**changes)


def test_config_validate_names_each_problem():
    assert _pipeline_config().validate() == []
    problems = _pipeline_config(chunk_frames=5, frame_gap=5, proposal_max_side=8, source_format="avi").validate()
    assert any("frame_gap" in p for p in problems)
    assert any("proposal_max_side" in p for p in problems)
    assert any("source_format" in p for p in problems)


def test_the_source_owns_the_pipeline_settings_the_config_has_no_defaults_for_them():
    with pytest.raises(TypeError, match="missing .* required keyword-only argument"):
        VideoPipelineConfig()
    # The synthetic videos' size defaults to the synthetic-video source's, never to a second set.
    source = SyntheticVideo()
    config = VideoPipelineConfig(source=SYNTHETIC_SOURCE, video_chunks=1, chunk_frames=2, baseline_frames_per_video=1,
                                 frame_gap=1, proposals_per_frame=1, proposal_max_side=0)
    assert (config.synthetic_videos, config.synthetic_frames, config.synthetic_width, config.synthetic_height) == (
        source.videos, source.frames, source.width, source.height)


def _command_config(*argv: str) -> VideoPipelineConfig:
    from orchestrator.video_pipeline import command_config, command_parser

    return command_config(command_parser().parse_args(list(argv)))


def _sweep_config(overrides: dict[str, str]) -> VideoPipelineConfig:
    """What a sweep training fti builds: the default preset, method=fti, then ``--set`` overrides."""
    from orchestrator.config import preset

    trial = preset("default").override({"method": "fti", **overrides})
    return trial.data["video"].pipeline_config(trial, trial.method.frame_gap)


def test_the_pipeline_command_builds_what_a_sweep_of_fti_builds(tmp_path):
    assert _command_config() == _sweep_config({})
    assert _command_config().frame_gap == METHODS.get("fti")().frame_gap
    # A source field by its name (either spelling) and the gap reach the command as they reach a sweep.
    for spelling in ("videos=7", "data.video.videos=7"):
        assert _command_config("--set", spelling, "--frame-gap", "3") == _sweep_config(
            {"data.video.videos": "7", "method.frame_gap": "3"})
    assert _command_config("--set", "videos=7").synthetic_videos == 7
    root = _command_config("--root", str(tmp_path), "--format", "video-files", "--set", "chunks=2",
                           "--cache", str(tmp_path / "cache"))
    assert root == _sweep_config({"data.video": "video", "data.video.root": str(tmp_path),
                                  "data.video.format": "video-files", "data.video.chunks": "2",
                                  "data_cache": str(tmp_path / "cache")})
    assert (root.source, root.source_format, root.video_chunks, root.chunk_frames) == (
        str(tmp_path), "video-files", 2, VideoRoot().chunk_frames)


def test_the_pipeline_command_refuses_what_a_sweep_refuses():
    with pytest.raises(ValueError, match="data source 'synthetic-video' has: .*videos"):
        _command_config("--set", "synthetic_videos=7")  # the old VideoPipelineConfig spelling
    with pytest.raises(ValueError, match="frame_gap=20 must be smaller than data.video.chunk_frames=20"):
        _command_config("--frame-gap", "20")


def test_stage_key_changes_with_params_and_inputs_only():
    key = stage_key("proposals", 1, {"r": 300}, ["frames-v1-abc"])
    assert key == stage_key("proposals", 1, {"r": 300}, ["frames-v1-abc"])
    assert key != stage_key("proposals", 1, {"r": 100}, ["frames-v1-abc"])
    assert key != stage_key("proposals", 1, {"r": 300}, ["frames-v1-abd"])
    assert key != stage_key("proposals", 2, {"r": 300}, ["frames-v1-abc"])


# ----------------------------------------------------------------------------- readers


def _jpeg(path, value=100, size=(24, 32)):
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))


def test_trackingnet_frames_sort_numerically_and_boxes_follow_frame_numbers(tmp_path):
    frames = tmp_path / "TRAIN_11" / "frames" / "YaXKZdSEwt4_0"
    frames.mkdir(parents=True)
    for n in range(12):
        _jpeg(frames / f"{n}.jpg", value=10 * n)
    (frames / "notes.txt").write_text("not a frame")
    (tmp_path / "TRAIN_11" / "anno").mkdir()
    (tmp_path / "TRAIN_11" / "anno" / "YaXKZdSEwt4_0.txt").write_text(
        "\n".join(f"{n},{n + 1},5,6" for n in range(12)) + "\n")
    (tmp_path / "TRAIN_2" / "frames" / "0HBDWix1LAk_1").mkdir(parents=True)

    numbered = trackingnet_frame_paths(frames)
    assert [n for n, _ in numbered] == list(range(12))  # 10 and 11 after 9, not after 1
    assert [p.name for _, p in numbered][:4] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    videos = discover_trackingnet(tmp_path)
    assert [v.video for v in videos] == ["TRAIN_2/0HBDWix1LAk_1", "TRAIN_11/YaXKZdSEwt4_0"]  # natural chunk order
    assert detect_format(tmp_path) == "trackingnet"
    opened = OpenedVideo(videos[1])
    assert opened.num_frames == 12
    assert opened.box(10) == [10.0, 11.0, 5.0, 6.0]
    decoded = list(opened.read([11, 2]))
    assert [f.index for f in decoded] == [2, 11]
    assert int(decoded[1].image.mean()) == pytest.approx(110, abs=2)  # 11.jpg, not 1.jpg


def test_malformed_annotation_lines_are_named_and_keep_later_lines_aligned():
    boxes, problems = parse_box_lines("1,2,3,4\n5,6,seven,8\n9,10,11\n13,14,15,16\n\n", "anno/v.txt")
    assert boxes.shape == (4, 4)
    assert np.isnan(boxes[1]).all() and np.isnan(boxes[2]).all()
    assert boxes[3].tolist() == [13, 14, 15, 16]
    assert len(problems) == 2 and problems[0].startswith("anno/v.txt:2:") and "seven" in problems[0]


def test_not_a_video_source_is_a_clear_error(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DatasetFormatError, match="not a TrackingNet root"):
        discover_videos(tmp_path)
    with pytest.raises(DatasetFormatError, match="does not exist"):
        discover_videos(tmp_path / "missing")


# ----------------------------------------------------------------------------- proposals


def _scene(width=96, height=72, seed=0):
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 40, np.uint8)
    for _ in range(6):
        x, y = rng.integers(0, width - 10), rng.integers(0, height - 10)
        cv2.rectangle(image, (int(x), int(y)), (int(x + rng.integers(6, 30)), int(y + rng.integers(6, 30))),
                      rng.integers(60, 255, 3).tolist(), -1)
    return image


def test_proposals_are_valid_boxes_inside_the_frame_at_most_r():
    image = _scene(160, 120)
    for max_side in (0, 64):
        boxes = SelectiveSearch(max_regions=15, max_side=max_side)(image)
        assert boxes.dtype == np.int32 and boxes.shape[1] == 4
        assert 0 < len(boxes) <= 15
        x, y, w, h = boxes.T
        assert (w > 0).all() and (h > 0).all()
        assert (x >= 0).all() and (y >= 0).all() and (x + w <= 160).all() and (y + h <= 120).all()


def test_proposals_on_a_shrunk_frame_map_back_to_full_resolution():
    # A frame that is an exact 3x enlargement of a small one: shrinking it back (INTER_AREA
    # over 3x3 equal pixels) gives the small frame exactly, so the full-resolution boxes
    # must be the small frame's boxes times 3.
    small = _scene(40, 30, seed=1)
    large = cv2.resize(small, (120, 90), interpolation=cv2.INTER_NEAREST)
    shrunk, sx, sy = shrink_for_proposals(large, 40)
    assert (sx, sy) == (3.0, 3.0) and np.array_equal(shrunk, small)
    on_small = SelectiveSearch(max_regions=25, max_side=0)(small)
    on_large = SelectiveSearch(max_regions=25, max_side=40)(large)
    np.testing.assert_array_equal(on_large, on_small * 3)


def test_top_r_does_not_depend_on_what_the_worker_ran_before():
    search = SelectiveSearch(max_regions=10, max_side=0)
    first = search(_scene(40, 30, seed=2))
    search(_scene(40, 30, seed=3))  # advances OpenCV's ranking random numbers unless reseeded
    np.testing.assert_array_equal(search(_scene(40, 30, seed=2)), first)


def test_box_mapping_scales_corners_and_clips():
    boxes = np.array([[0, 0, 10, 5], [35, 25, 10, 10], [50, 50, 4, 4]])
    mapped = boxes_to_full_resolution(boxes, 2.0, 4.0, 80, 120)
    assert mapped.tolist() == [[0, 0, 20, 20], [70, 100, 10, 20]]  # the second clipped, the third outside: dropped


def test_iou_and_recall():
    truth = [np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10]])]
    proposals = [np.array([[0, 0, 10, 10]]), np.array([[5, 0, 10, 10]])]  # IoU 1 and 1/3
    assert box_iou(truth[0], proposals[1])[0, 0] == pytest.approx(50 / 150)
    assert recall_at_iou(truth, proposals, 0.5) == 0.5


# ----------------------------------------------------------------------------- synthetic videos


def test_synthetic_videos_write_trackingnet_layout_with_boxes_that_follow_the_object(tmp_path):
    from datasets.synthetic.video import render_video, write_trackingnet

    name, frames, boxes = render_video(2, 30, 96, 72, seed=1)
    assert len(frames) == 30 and frames[0].shape == (72, 96, 3)
    x, y, w, h = boxes.T
    assert (w > 4).all() and (h > 4).all() and (x >= 0).all() and (x + w <= 96).all() and (y + h <= 72).all()
    assert abs((x + w / 2)[-1] - (x + w / 2)[0]) > 30  # it crosses the frame
    assert not np.array_equal(frames[0], frames[1])  # the object moves, turns and is relit

    root = write_trackingnet(tmp_path, videos=2, frames=12, width=64, height=48, seed=1, processes=1)
    videos = discover_trackingnet(root)
    assert len(videos) == 2 and all(v.video.startswith("TRAIN_0/") and v.video.endswith("_0") for v in videos)
    opened = OpenedVideo(videos[0])
    assert opened.num_frames == 12 and len(opened.boxes) == 12 and opened.bad_annotation_lines == 0
