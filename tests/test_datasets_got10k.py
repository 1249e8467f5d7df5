"""The GOT-10k reader and occlusion set on hand-made trees (GOT-10k's real naming) and on the generated one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.errors import DatasetFormatError
from datasets.got10k import (
    cover_level, read_meta_info, read_occlusion, read_sequence_annotations, sequence_names, validate_got10k_root,
)
from datasets.synthetic.got10k import OCCLUDER_RGB, ensure_synthetic_got10k, write_got10k

META = """[METAINFO]
url: https://youtu.be/x
begin: 00:00:01
end: 00:00:10
anno_fps: 10Hz
object_class: {cls}
motion_class: swimming
major_class: invertebrate
root_class: animal
motion_adverb: slowly
resolution: (40, 30)
"""


def make_sequence(split: Path, name: str, covers: list[int], cls: str = "ctenophore", absent: list[int] | None = None,
                  boxes: list[str] | None = None, frames: int | None = None) -> Path:
    """A sequence folder as GOT-10k ships it; each frame a 40 x 30 JPEG of a distinct grey."""
    folder = split / name
    folder.mkdir(parents=True)
    n = len(covers)
    for i in range(n if frames is None else frames):
        Image.new("RGB", (40, 30), (10 * i, 10 * i, 10 * i)).save(folder / f"{i + 1:08d}.jpg")
    (folder / "groundtruth.txt").write_text("".join(f"{b}\n" for b in boxes or ["5.0000,4.0000,20.0000,15.0000"] * n))
    (folder / "absence.label").write_text("".join(f"{a}\n" for a in absent or [0] * n))
    (folder / "cover.label").write_text("".join(f"{c}\n" for c in covers))
    (folder / "cut_by_image.label").write_text("0\n" * n)
    (folder / "meta_info.ini").write_text(META.format(cls=cls))
    with open(split / "list.txt", "a") as listing:
        listing.write(name + "\n")
    return folder


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path / "cache"))
    split = tmp_path / "GOT-10k" / "train"
    split.mkdir(parents=True)
    make_sequence(split, "GOT-10k_Train_000001", [8, 8, 7, 5, 5, 3], cls="fish")
    make_sequence(split, "GOT-10k_Train_000002", [8, 8, 8, 8], cls="car")  # one level: contributes nothing
    make_sequence(split, "GOT-10k_Train_000003", [0, 2, 6, 6, 8], cls="fish", absent=[1, 0, 0, 0, 0])
    return tmp_path / "GOT-10k"


def test_cover_levels_follow_got10ks_bins():
    assert [cover_level(r) for r in (0.0, 0.1, 0.15, 0.16, 0.5, 0.9, 0.95, 1.0)] == [0, 1, 1, 2, 4, 6, 7, 8]


def test_one_crop_per_distinct_level_and_sequences_with_one_level_counted(tree):
    data = read_occlusion(tree)
    # Sequence 1: levels 3, 5, 7, 8; sequence 3: 2, 6, 8 (the absent level-0 frame skipped).
    assert len(data) == 7 and data.factor == "occlusion"
    assert data.targets.tolist() == [0, 0, 0, 0, 1, 1, 1] and np.array_equal(data.targets, data.trajectories)
    assert data.skipped == {"absent_frames": 1, "sequences_too_few_levels": 1}
    crops = [Image.open(p) for p in data.paths]
    assert all(c.size == (20, 15) for c in crops)
    # The first frame of each level is cut: sequence 1 frames 6, 4, 3, 1 (greys 50, 30, 20, 0) sorted by level.
    assert [round(c.getpixel((10, 7))[0] / 10) for c in crops[:4]] == [5, 3, 2, 0]
    first = tree / "train" / "GOT-10k_Train_000001"
    assert data.sources[:4] == tuple(str(first / f"{n:08d}.jpg") for n in (6, 4, 3, 1))
    again = read_occlusion(tree)  # reuses the cached crops
    assert again.paths == data.paths and again.skipped == data.skipped


def test_target_object_class_and_max_targets(tree):
    by_class = read_occlusion(tree, target="object_class")
    assert by_class.targets.tolist() == [0] * 7 and by_class.trajectories.tolist() == [0, 0, 0, 0, 1, 1, 1]
    first = read_occlusion(tree, max_targets=1)
    assert len(first) == 4 and set(first.targets.tolist()) == {0}


def test_box_outside_image_is_skipped_and_counted_and_a_missing_frame_is_an_error(tree):
    split = tree / "train"
    folder = make_sequence(split, "GOT-10k_Train_000004", [8, 8, 4, 4, 2],
                           boxes=["5,4,20,15", "5,4,20,15", "100,100,10,10", "5,4,20,15", "5,4,0,0"])
    data = read_occlusion(tree)
    assert data.skipped["boxes_outside_image"] == 1 and data.skipped["zero_boxes"] == 1
    # Levels 8 (frame 1) and 4 (frame 4 instead of frame 3, outside): still a trajectory.
    assert data.targets.tolist().count(2) == 2
    # An annotated frame that is not there is a wrong root (issue 23, finding 2), not a skip.
    (folder / "00000001.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=r"GOT-10k_Train_000004/00000001\.jpg: missing"):
        read_occlusion(tree)


def test_label_length_must_match_the_frame_count(tree):
    cover = tree / "train" / "GOT-10k_Train_000001" / "cover.label"
    cover.write_text("8\n8\n7\n")
    with pytest.raises(DatasetFormatError, match=r"cover\.label: has 3 lines but groundtruth\.txt has 6 frames") as err:
        read_occlusion(tree)
    assert str(cover) in str(err.value)


@pytest.mark.parametrize("name, text, message", [
    ("cover.label", "8\n9\n8\n8\n8\n8\n", "line 2 is '9'; expected an integer from 0 to 8"),
    ("absence.label", "0\nyes\n0\n0\n0\n0\n", "line 2 is 'yes'"),
    ("groundtruth.txt", "1,2,3\n", "line 1 is '1,2,3'; expected x,y,width,height"),
])
def test_malformed_annotation_files_name_the_file_and_line(tree, name, text, message):
    path = tree / "train" / "GOT-10k_Train_000001" / name
    path.write_text(text)
    with pytest.raises(DatasetFormatError, match=message) as err:
        read_sequence_annotations(path.parent)
    assert str(path) in str(err.value)


def test_meta_info_and_listing(tree):
    meta = read_meta_info(tree / "train" / "GOT-10k_Train_000001" / "meta_info.ini")
    assert meta["object_class"] == "fish" and meta["resolution"] == "(40, 30)"
    assert list(meta)[:5] == ["url", "begin", "end", "anno_fps", "object_class"]
    (tree / "train" / "GOT-10k_Train_000001" / "meta_info.ini").unlink()
    with pytest.raises(DatasetFormatError, match="meta_info.ini: missing"):
        read_occlusion(tree, target="object_class")
    with open(tree / "train" / "list.txt", "a") as listing:
        listing.write("GOT-10k_Train_000099\n")
    assert sequence_names(tree / "train")[-1] == "GOT-10k_Train_000099"
    assert read_occlusion(tree).skipped["missing_sequences"] == 1


def test_bad_roots_are_named(tmp_path):
    with pytest.raises(DatasetFormatError, match="not a GOT-10k root"):
        validate_got10k_root(tmp_path)
    with pytest.raises(DatasetFormatError, match="does not exist"):
        validate_got10k_root(tmp_path / "nope")


def test_generated_tree_has_exact_occlusion_levels(data_cache):
    root = ensure_synthetic_got10k(num_sequences=6, frames=12, image_size=32, cache=str(data_cache), processes=1)
    assert validate_got10k_root(root) == root / "train"
    names = sequence_names(root / "train")
    assert names == [f"GOT-10k_Train_{k:06d}" for k in range(1, 7)]
    for name in names:
        sequence = read_sequence_annotations(root / "train" / name)
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


def test_crops_of_a_real_root_go_to_the_trials_data_cache_not_the_users(tree, tmp_path):
    """Issue 23, finding 2: on a cluster the trial's data_cache is shared storage; crops in
    one node's user cache ($DSSL_CACHE_DIR, set by `tree`) are paths other nodes cannot read."""
    from trainables.config import TrialConfig
    from trainables.evaluation import read_evaluation_data

    trial = TrialConfig().override({"invariances": "occlusion", "data.got10k": "got10k", "data.got10k.root": str(tree),
                                    "data_cache": str(tmp_path / "trial-cache")})
    (part,) = trial.invariances
    data = read_evaluation_data(part, trial)
    assert data.paths and all(Path(p).is_relative_to(tmp_path / "trial-cache") for p in data.paths)
    assert not (tmp_path / "cache").exists()
