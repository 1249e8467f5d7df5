"""The one GOT-10k reader (``datasets.got10k``) and its occlusion set, on trees written by
the project's generator (``datasets.synthetic.got10k``), edited where a test needs
chosen levels, boxes or a broken root."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.errors import DatasetFormatError
from datasets.got10k import (
    cover_level, read_groundtruth, read_meta_info, read_occlusion, read_sequence, sequence_folders,
    sequence_folders_under, validate_got10k_root,
)
from datasets.synthetic.got10k import OCCLUDER_RGB, ensure_synthetic_got10k, write_got10k
from datasets.video.sources import OpenedVideo, check_sources, detect_format, discover_videos

FRAMES = 6


def lines(values) -> str:
    return "".join(f"{v}\n" for v in values)


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    """A generated GOT-10k root of three 6-frame sequences (72 x 24 px)."""
    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path / "cache"))
    return write_got10k(tmp_path / "GOT-10k", num_sequences=3, frames=FRAMES, image_size=24, processes=1)


def sequence(tree: Path, number: int) -> Path:
    return tree / "train" / f"GOT-10k_Train_{number:06d}"


def set_levels(folder: Path, covers: list[int], absent: list[int] | None = None) -> None:
    (folder / "cover.label").write_text(lines(covers))
    (folder / "absence.label").write_text(lines(absent or [0] * len(covers)))


@pytest.fixture
def chosen_levels(tree) -> Path:
    """Sequence 1 at levels 8 8 7 5 5 3, sequence 2 at one level, sequence 3 with an absent frame."""
    set_levels(sequence(tree, 1), [8, 8, 7, 5, 5, 3])
    set_levels(sequence(tree, 2), [8] * FRAMES)  # one level: contributes nothing
    set_levels(sequence(tree, 3), [0, 2, 6, 6, 8, 8], absent=[1, 0, 0, 0, 0, 0])
    return tree


def test_cover_levels_follow_got10ks_bins():
    assert [cover_level(r) for r in (0.0, 0.1, 0.15, 0.16, 0.5, 0.9, 0.95, 1.0)] == [0, 1, 1, 2, 4, 6, 7, 8]


def test_one_crop_per_distinct_level_and_sequences_with_one_level_counted(chosen_levels):
    data = read_occlusion(chosen_levels)
    # Sequence 1: levels 3, 5, 7, 8; sequence 3: 2, 6, 8 (the absent level-0 frame skipped).
    assert len(data) == 7 and data.factor == "occlusion"
    assert data.targets.tolist() == [0, 0, 0, 0, 1, 1, 1] and np.array_equal(data.targets, data.trajectories)
    assert data.skipped == {"absent_frames": 1, "sequences_too_few_levels": 1}
    # The first frame of each level, sorted by level: sequence 1 frames 6, 4, 3, 1; sequence 3 frames 2, 3, 5.
    expected = [(1, n) for n in (6, 4, 3, 1)] + [(3, n) for n in (2, 3, 5)]
    assert data.sources == tuple(str(sequence(chosen_levels, s) / f"{n:08d}.jpg") for s, n in expected)
    # Each crop is its frame cut by its groundtruth.txt box.
    for path, (number, frame) in zip(data.paths, expected):
        x, y, w, h = read_groundtruth(sequence(chosen_levels, number) / "groundtruth.txt")[frame - 1].astype(int)
        with Image.open(sequence(chosen_levels, number) / f"{frame:08d}.jpg") as image:
            cut = np.asarray(image.convert("RGB").crop((x, y, x + w, y + h)))
        assert np.array_equal(np.asarray(Image.open(path)), cut)
    again = read_occlusion(chosen_levels)  # reuses the cached crops
    assert again.paths == data.paths and again.skipped == data.skipped


def test_target_object_class_and_max_targets(chosen_levels):
    meta = sequence(chosen_levels, 3) / "meta_info.ini"
    first_class = read_meta_info(sequence(chosen_levels, 1) / "meta_info.ini")["object_class"]
    meta.write_text("".join(f"object_class: {first_class}\n" if line.startswith("object_class:") else f"{line}\n"
                            for line in meta.read_text().splitlines()))
    by_class = read_occlusion(chosen_levels, target="object_class")
    assert by_class.targets.tolist() == [0] * 7 and by_class.trajectories.tolist() == [0, 0, 0, 0, 1, 1, 1]
    first = read_occlusion(chosen_levels, max_targets=1)
    assert len(first) == 4 and set(first.targets.tolist()) == {0}


def test_box_outside_image_is_skipped_and_counted_and_a_missing_frame_names_its_line(chosen_levels):
    folder = sequence(chosen_levels, 2)
    set_levels(folder, [8, 8, 4, 4, 2, 2])
    boxes = (folder / "groundtruth.txt").read_text().splitlines()
    boxes[2], boxes[4] = "1000,1000,10,10", "5,4,0,0"  # outside the 72 x 24 frame; empty
    (folder / "groundtruth.txt").write_text(lines(boxes))
    data = read_occlusion(chosen_levels)
    assert data.skipped["boxes_outside_image"] == 1 and data.skipped["zero_boxes"] == 1
    # Levels 2 (frame 6: frame 5 is empty), 4 (frame 4: frame 3 is outside) and 8 (frame 1).
    assert data.sources[4:7] == tuple(str(folder / f"{n:08d}.jpg") for n in (6, 4, 1))
    # An annotated frame that is not there is a wrong root (issue 23, finding 2), not a skip.
    (folder / "00000003.jpg").unlink()
    message = rf"GOT-10k_Train_000002/00000003\.jpg: missing \(line 3 of .*GOT-10k_Train_000002/groundtruth\.txt"
    with pytest.raises(DatasetFormatError, match=message):
        read_occlusion(chosen_levels)
    with pytest.raises(DatasetFormatError, match=message):  # the video pipeline's check before decoding
        check_sources(discover_videos(chosen_levels))


def test_a_folder_list_txt_names_but_is_missing_is_an_error_before_any_training(tree, tmp_path):
    """Issue 22: it was a warning (video) or a count (occlusion); a partly copied root is refused."""
    from trainables.config import TrialConfig

    shutil.rmtree(sequence(tree, 2))
    listing, folder = tree / "train" / "list.txt", sequence(tree, 2)
    message = f"{listing}: lists 'GOT-10k_Train_000002' but {folder} is not a folder"
    for read in (sequence_folders, sequence_folders_under, validate_got10k_root, read_occlusion, discover_videos):
        with pytest.raises(DatasetFormatError) as err:
            read(tree / "train" if read is sequence_folders else tree)
        assert str(err.value) == message, read.__name__
    # The config's root checks (run on the driver before prepare_data) say the same.
    occlusion = TrialConfig().override({"invariances": "occlusion", "data.got10k": "got10k",
                                        "data.got10k.root": str(tree)})
    assert f"data.got10k: {message}" in occlusion.problems()
    video = TrialConfig().override({"method": "fti", "data.video": "video", "data.video.root": str(tree)})
    assert f"data.video: {message}" in video.problems()


def test_label_length_must_match_the_frame_count(tree):
    cover = sequence(tree, 1) / "cover.label"
    cover.write_text("8\n8\n7\n")
    with pytest.raises(DatasetFormatError, match=r"cover\.label: has 3 lines but groundtruth\.txt has 6 frames") as err:
        read_occlusion(tree)
    assert str(cover) in str(err.value)


@pytest.mark.parametrize("name, text, message", [
    ("cover.label", "8\n9\n8\n8\n8\n8\n", "line 2 is '9'; expected an integer from 0 to 8"),
    ("absence.label", "0\nyes\n0\n0\n0\n0\n", "line 2 is 'yes'"),
    ("groundtruth.txt", "1,2,3,4\n1,2,3\n", "line 2 is '1,2,3'; expected x,y,width,height"),
])
def test_malformed_annotation_files_name_the_file_and_line(tree, name, text, message):
    path = sequence(tree, 1) / name
    path.write_text(text)
    with pytest.raises(DatasetFormatError, match=message) as err:
        read_sequence(path.parent)
    assert str(path) in str(err.value)
    if name == "groundtruth.txt":  # the video pipeline reads it through the same reader
        with pytest.raises(DatasetFormatError, match=message):
            check_sources(discover_videos(tree))


def test_meta_info_and_listing(tree):
    meta = read_meta_info(sequence(tree, 1) / "meta_info.ini")
    assert meta["resolution"] == "(72, 24)" and meta["object_class"]
    assert list(meta)[:5] == ["url", "begin", "end", "anno_fps", "object_class"]
    assert sequence_folders(tree / "train") == [sequence(tree, n) for n in (1, 2, 3)]
    (sequence(tree, 1) / "meta_info.ini").unlink()
    with pytest.raises(DatasetFormatError, match="meta_info.ini: missing"):
        read_occlusion(tree, target="object_class")


def test_bad_roots_are_named(tmp_path):
    with pytest.raises(DatasetFormatError, match="not a GOT-10k root"):
        validate_got10k_root(tmp_path)
    with pytest.raises(DatasetFormatError, match="does not exist"):
        validate_got10k_root(tmp_path / "nope")


def test_the_video_pipeline_reads_sequences_through_the_same_reader(tree):
    assert detect_format(tree) == "got10k" and detect_format(sequence(tree, 1)) == "got10k"
    videos = discover_videos(tree)
    assert [v.video for v in videos] == [f"train/GOT-10k_Train_{n:06d}" for n in (1, 2, 3)]
    assert [v.video for v in discover_videos(tree / "train")] == [f"GOT-10k_Train_{n:06d}" for n in (1, 2, 3)]
    opened = OpenedVideo(videos[0])
    boxes = read_groundtruth(sequence(tree, 1) / "groundtruth.txt")
    assert opened.num_frames == FRAMES and [opened.box(i) for i in range(FRAMES)] == boxes.tolist()
    (frame,) = opened.read([4])
    assert frame.source_path == str(sequence(tree, 1) / "00000005.jpg")
    assert frame.encoded == (sequence(tree, 1) / "00000005.jpg").read_bytes()
    # The test split's layout: the first frame annotated, no label files. Frames go on.
    folder = sequence(tree, 2)
    (folder / "groundtruth.txt").write_text(lines(folder.joinpath("groundtruth.txt").read_text().splitlines()[:1]))
    for name in ("absence.label", "cover.label", "cut_by_image.label", "meta_info.ini"):
        (folder / name).unlink()
    opened = OpenedVideo(discover_videos(folder)[0])
    assert opened.num_frames == FRAMES and opened.box(0) is not None and opened.box(1) is None
    # A gap in the frame numbers is a missing frame, not a shorter video.
    (folder / "00000004.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=r"GOT-10k_Train_000002/00000004\.jpg: missing \(the frames go on"):
        check_sources(discover_videos(tree))


def test_generated_tree_has_exact_occlusion_levels(data_cache):
    root = ensure_synthetic_got10k(num_sequences=6, frames=12, image_size=32, cache=str(data_cache), processes=1)
    assert validate_got10k_root(root) == root / "train"
    folders = sequence_folders(root / "train")
    assert [f.name for f in folders] == [f"GOT-10k_Train_{k:06d}" for k in range(1, 7)]
    for folder in folders:
        sequence = read_sequence(folder)
        assert len(sequence) == 12 and sequence.cut_by_image is not None and not sequence.cut_by_image.any()
        assert sequence.cover[0] == sequence.cover[-1] == 8  # starts and ends in full view
        assert np.array_equal(sequence.absent, sequence.cover == 0)
        assert len(set(sequence.cover.tolist()) - {0}) >= 3
        # The occluder's share of the box grows as the level falls.
        shares = []
        for index in range(12):
            x, y, w, h = sequence.boxes[index].astype(int)
            crop = np.asarray(Image.open(sequence.frame(index)).convert("RGB"))[y:y + h, x:x + w].astype(int)
            shares.append((np.abs(crop - OCCLUDER_RGB).max(axis=2) < 60).mean())
        order = np.argsort(-sequence.cover, kind="stable")
        assert shares[order[0]] < 0.05 and np.all(np.diff(np.asarray(shares)[order]) > -0.08)
    data = read_occlusion(root)
    assert len(set(data.targets.tolist())) == 6 and not data.skipped.get("sequences_too_few_levels")


def test_generation_is_deterministic(tmp_path):
    write_got10k(tmp_path / "a", num_sequences=2, frames=6, image_size=24, processes=1)
    write_got10k(tmp_path / "b", num_sequences=2, frames=6, image_size=24, processes=1)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 2 * (6 + 5) + 1
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_crops_of_a_real_root_go_to_the_trials_data_cache_not_the_users(chosen_levels, tmp_path):
    """Issue 23, finding 2: on a cluster the trial's data_cache is shared storage; crops in
    one node's user cache ($DSSL_CACHE_DIR, set by `tree`) are paths other nodes cannot read."""
    from trainables.config import TrialConfig
    from trainables.evaluation import read_evaluation_data

    trial = TrialConfig().override({"invariances": "occlusion", "data.got10k": "got10k",
                                    "data.got10k.root": str(chosen_levels),
                                    "data_cache": str(tmp_path / "trial-cache")})
    (part,) = trial.invariances
    data = read_evaluation_data(part, trial)
    assert data.paths and all(Path(p).is_relative_to(tmp_path / "trial-cache") for p in data.paths)
    assert not (tmp_path / "cache").exists()
