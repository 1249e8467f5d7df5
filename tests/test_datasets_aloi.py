"""The ALOI reader on ALOI's real naming: generated trees, hand-made partial trees, bad roots."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.aloi import ALOI_FACTORS, InvarianceSet, read_aloi, validate_aloi_root
from datasets.errors import DatasetFormatError
from datasets.synthetic.turntable import ensure_synthetic_aloi

_PIXEL = np.zeros((4, 4, 3), np.uint8)


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), _PIXEL)


@pytest.fixture(scope="module")
def generated(data_cache) -> Path:
    return ensure_synthetic_aloi(num_objects=4, image_size=32, seed=0, cache=str(data_cache), processes=1)


@pytest.fixture
def partial_tree(tmp_path) -> Path:
    """A hand-made tree like a real download: gaps, stereo files, strays, numeric order 1 < 2 < 10."""
    png4 = tmp_path / "aloi" / "png4"
    _touch(png4 / "10", "10_r0.png", "10_r5.png", "10_i110.png", "10_l1c1.png")
    _touch(png4 / "2", "2_r355.png", "2_r10.png", "2_r100.png", "2_r0.png", "2_l8c3.png", "2_l2c1.png", "2_l2c3.png")
    _touch(png4 / "1", "1_r0.png", "1_c.png", "1_l.png", "1_r.png", "1_i250.png", "1_i110.png", "1_I130.PNG")
    (png4 / "1" / "Thumbs.db").write_bytes(b"\0")
    (png4 / "1" / ".DS_Store").write_bytes(b"\0")
    (png4 / "README.txt").write_text("not an object")
    (png4 / "masks").mkdir()
    return tmp_path / "aloi"


def test_reads_generated_tree_per_factor(generated):
    expected = {"viewpoint": 72, "illumination_direction": 24, "illumination_color": 12}
    for factor in ALOI_FACTORS:
        data = read_aloi(generated, factor)
        assert isinstance(data, InvarianceSet) and data.factor == factor
        assert len(data) == 4 * expected[factor]
        assert data.targets.dtype == np.int64 and data.trajectories.dtype == np.int64
        assert np.array_equal(data.targets, np.repeat([1, 2, 3, 4], expected[factor]))
        assert all(p.is_file() and p.parent.name == str(t) for p, t in zip(data.paths, data.targets))
        if factor == "illumination_direction":  # one trajectory per (object, camera), ids distinct
            assert len(set(data.trajectories.tolist())) == 4 * 3
        else:  # one per object, as before: its id is the object number
            assert np.array_equal(data.trajectories, data.targets)


def _camera(path: Path) -> int:
    return int(path.stem.split("c")[-1])  # <obj>_l<L>c<C>


def test_every_illumination_direction_trajectory_holds_a_single_camera_unless_pooled(generated):
    data = read_aloi(generated, "illumination_direction")
    members: dict[int, set[tuple[int, int]]] = {}
    for path, target, trajectory in zip(data.paths, data.targets, data.trajectories):
        members.setdefault(int(trajectory), set()).add((int(target), _camera(path)))
    # The id alone names the trajectory: one object, one camera, its 8 lamps.
    assert len(members) == 12 and all(len(m) == 1 for m in members.values())
    assert np.bincount(data.trajectories).tolist() == [8] * 12
    assert np.array_equal(data.targets, np.repeat([1, 2, 3, 4], 24))
    # Pooled: the old reading, one trajectory per object whose id is the object number.
    pooled = read_aloi(generated, "illumination_direction", pooled=True)
    assert pooled.paths == data.paths and np.array_equal(pooled.targets, data.targets)
    assert np.array_equal(pooled.trajectories, pooled.targets)
    # The part's setting reaches the reader.
    from datasets.invariance_sets.aloi import AloiIlluminationDirection

    part = AloiIlluminationDirection(pooled=True).trajectories(generated, 0)
    assert np.array_equal(part.trajectories, part.targets)


def test_one_camera_keeps_only_its_lamp_images(generated, partial_tree):
    data = read_aloi(generated, "illumination_direction", camera=2, max_objects=3)
    assert {_camera(p) for p in data.paths} == {2} and len(data) == 3 * 8
    assert np.array_equal(data.trajectories, data.targets)  # one camera: a trajectory per object
    # Objects without the camera's images are not counted towards max_objects.
    light = read_aloi(partial_tree, "illumination_direction", camera=1, max_objects=2)
    assert [p.name for p in light.paths] == ["2_l2c1.png", "10_l1c1.png"]
    with pytest.raises(DatasetFormatError, match="no illumination_direction images of camera 2"):
        read_aloi(partial_tree, "illumination_direction", camera=2)
    with pytest.raises(ValueError, match="camera=1 applies to illumination_direction only"):
        read_aloi(generated, "viewpoint", camera=1)
    with pytest.raises(ValueError, match="camera must be 0 .* got -1"):
        read_aloi(generated, "illumination_direction", camera=-1)


def test_the_camera_is_a_config_key_of_the_illumination_direction_set(generated):
    from tests.tiny import tiny_config

    trial = tiny_config("").override({"invariances": "illumination_direction",
                                      "invariances.illumination_direction.camera": 3})
    part = trial.invariances[0]
    assert trial.flat()["invariances.illumination_direction.camera"] == 3
    assert {_camera(p) for p in part.trajectories(generated, 0).paths} == {3}
    bad = trial.override({"invariances.illumination_direction.camera": -2})
    # Exactly one section prefix (the part's own message once carried it twice).
    assert [p for p in bad.problems() if "camera" in p] == [
        "invariances.illumination_direction.camera=-2 must be 0 (every camera) or a camera number >= 1 (ALOI's c1..c3)"]


def test_conditions_sorted_by_their_numbers(generated):
    view = read_aloi(generated, "viewpoint")
    assert [p.name for p in view.paths[:4]] == ["1_r0.png", "1_r5.png", "1_r10.png", "1_r15.png"]
    assert view.paths[71].name == "1_r355.png"
    light = read_aloi(generated, "illumination_direction")
    assert [p.name for p in light.paths[:4]] == ["1_l1c1.png", "1_l1c2.png", "1_l1c3.png", "1_l2c1.png"]
    colour = read_aloi(generated, "illumination_color")
    assert [p.name for p in colour.paths[8:12]] == ["1_i190.png", "1_i210.png", "1_i230.png", "1_i250.png"]


def test_max_objects_keeps_the_first_objects(generated):
    data = read_aloi(generated, "illumination_color", max_objects=2)
    assert np.array_equal(np.unique(data.targets), [1, 2]) and len(data) == 24


def test_partial_tree_with_stereo_and_strays(partial_tree):
    view = read_aloi(partial_tree, "viewpoint")
    assert [p.name for p in view.paths] == [
        "1_r0.png", "2_r0.png", "2_r10.png", "2_r100.png", "2_r355.png", "10_r0.png", "10_r5.png",
    ]
    assert view.targets.tolist() == [1, 2, 2, 2, 2, 10, 10]
    colour = read_aloi(partial_tree, "illumination_color")
    assert [p.name for p in colour.paths] == ["1_i110.png", "1_I130.PNG", "1_i250.png", "10_i110.png"]
    light = read_aloi(partial_tree / "png4", "illumination_direction")  # the resolution folder itself
    assert [p.name for p in light.paths] == ["2_l2c1.png", "2_l2c3.png", "2_l8c3.png", "10_l1c1.png"]
    assert read_aloi(partial_tree, "illumination_direction", max_objects=1).targets.tolist() == [2, 2, 2]


def test_other_resolutions_are_found(tmp_path):
    _touch(tmp_path / "png2" / "7", "7_r0.png", "7_r5.png")
    assert read_aloi(tmp_path, "viewpoint").targets.tolist() == [7, 7]
    assert validate_aloi_root(tmp_path) == tmp_path / "png2"


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetFormatError, match="nowhere.*does not exist"):
        read_aloi(missing, "viewpoint")
    with pytest.raises(DatasetFormatError, match="nowhere"):
        validate_aloi_root(missing)


def test_non_aloi_folder_is_rejected(tmp_path):
    _touch(tmp_path / "train" / "cat", "cat_0.png")
    with pytest.raises(DatasetFormatError, match=f"{tmp_path}.*png4/"):
        validate_aloi_root(tmp_path)
    with pytest.raises(ValueError):  # DatasetFormatError is a ValueError
        read_aloi(tmp_path, "viewpoint")


def test_resolution_folder_without_objects(tmp_path):
    (tmp_path / "png4" / "notes").mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match="png4.*no ALOI object folders"):
        read_aloi(tmp_path, "viewpoint")


def test_misnamed_file_in_object_folder(tmp_path):
    _touch(tmp_path / "png4" / "3", "3_r0.png", "4_r5.png")
    with pytest.raises(DatasetFormatError, match="4_r5.png.*3_<condition>.png"):
        read_aloi(tmp_path, "viewpoint")
    _touch(tmp_path / "other" / "png4" / "5", "5_x9.png")
    with pytest.raises(DatasetFormatError, match="5_x9.png.*unknown ALOI condition"):
        validate_aloi_root(tmp_path / "other")


def test_factor_without_images(tmp_path):
    _touch(tmp_path / "png4" / "1", "1_r0.png", "1_c.png")
    assert len(read_aloi(tmp_path, "viewpoint")) == 1
    with pytest.raises(DatasetFormatError, match="no illumination_color images"):
        read_aloi(tmp_path, "illumination_color")
    with pytest.raises(ValueError, match="unknown ALOI factor"):
        read_aloi(tmp_path, "occlusion")


def test_validate_returns_resolution_folder(generated, tmp_path):
    assert validate_aloi_root(generated) == generated / "png4"
    assert validate_aloi_root(generated / "png4") == generated / "png4"
    _touch(tmp_path / "png4" / "1", "1_c.png")  # stereo only: nothing to evaluate
    with pytest.raises(DatasetFormatError, match="no ALOI images"):
        validate_aloi_root(tmp_path)
