"""The PASCAL3D+ reader and instance sets on hand-made .mat trees (release 1.1's naming) and the generated one."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from datasets.errors import DatasetFormatError
from datasets.pascal3d import ObjectFilter, read_annotation, read_instance_set, validate_pascal3d_root, viewpoint_bin
from datasets.synthetic.pascal3d import ensure_synthetic_pascal3d

OBJECT_FIELDS = ("class", "bbox", "truncated", "occluded", "difficult", "viewpoint")


def struct_array(fields, rows) -> np.ndarray:
    array = np.empty((1, len(rows)), dtype=[(f, object) for f in fields])
    for k, row in enumerate(rows):
        for f in fields:
            array[0, k][f] = row[f]
    return array


def obj(cls, bbox, azimuth=0.0, elevation=10.0, truncated=0, occluded=0, difficult=0, distance=5.0, coarse=None):
    viewpoint = {"azimuth": azimuth, "elevation": elevation, "distance": distance,
                 "azimuth_coarse": coarse if coarse is not None else azimuth, "elevation_coarse": elevation}
    return {"class": cls, "bbox": np.asarray([bbox], float), "truncated": truncated, "occluded": occluded,
            "difficult": difficult, "viewpoint": struct_array(tuple(viewpoint), [viewpoint])}


def write_image(root: Path, cls: str, image_id: str, objects: list[dict], subset="pascal", size=(40, 30)) -> Path:
    images = root / "Images" / f"{cls}_{subset}"
    annotations = root / "Annotations" / f"{cls}_{subset}"
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    suffix = ".jpg" if subset == "pascal" else ".JPEG"
    Image.new("RGB", size, (len(image_id) * 7 % 255, 80, 120)).save(images / f"{image_id}{suffix}", format="JPEG")
    record = {"filename": f"{image_id}{suffix}", "objects": struct_array(OBJECT_FIELDS, objects)}
    path = annotations / f"{image_id}.mat"
    scipy.io.savemat(path, {"record": record})
    return path


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "PASCAL3D+_release1.1"
    # car: 2 objects at azimuth ~0, 1 at 90, 1 at 180; one truncated, one occluded, one difficult.
    write_image(root, "car", "2008_000001", [obj("car", [1, 1, 20, 15], 3.0), obj("person", [2, 2, 9, 9])])
    write_image(root, "car", "2008_000002", [obj("car", [5, 5, 30, 25], 355.0), obj("car", [1, 1, 10, 10], 90.0)])
    write_image(root, "car", "2008_000003", [obj("car", [1, 1, 40, 30], 180.0)])
    write_image(root, "car", "2008_000004", [obj("car", [1, 1, 9, 9], 0.0, truncated=1),
                                             obj("car", [1, 1, 9, 9], 0.0, occluded=1),
                                             obj("car", [1, 1, 9, 9], 0.0, difficult=1)])
    write_image(root, "car", "n02814533_1", [obj("car", [2, 2, 12, 12], 91.0)], subset="imagenet")
    # chair: azimuth 45 twice (the second from the coarse angle: distance 0), 270 once.
    write_image(root, "chair", "2008_000010", [obj("chair", [1, 1, 10, 20], 47.0)])
    write_image(root, "chair", "2008_000011", [obj("chair", [1, 1, 10, 20], 0.0, distance=0.0, coarse=40.0)])
    write_image(root, "chair", "2008_000012", [obj("chair", [3, 3, 12, 22], 270.0)])
    return root


def test_viewpoint_bins():
    assert [viewpoint_bin(a, 10.0, 8, 1) for a in (0, 22.4, 22.6, 337.6, 359.9, 90, 180, -45)] == [0, 0, 1, 0, 0, 2, 4, 7]
    assert [viewpoint_bin(0.0, e, 1, 3) for e in (-90, -31, -29, 29, 31, 90)] == [0, 0, 1, 1, 2, 2]
    assert viewpoint_bin(90.0, 40.0, 8, 3) == 2 * 3 + 2


def test_annotation_fields_and_other_classes(tree):
    objects = read_annotation(tree / "Annotations" / "car_pascal" / "2008_000001.mat", tree / "Images" / "car_pascal")
    assert [o.category for o in objects] == ["car", "person"]
    car = objects[0]
    assert car.bbox == (1.0, 1.0, 20.0, 15.0) and car.crop_edges() == (0.0, 0.0, 20.0, 15.0)
    assert car.azimuth == 3.0 and car.elevation == 10.0 and not (car.truncated or car.occluded or car.difficult)
    assert car.image == tree / "Images" / "car_pascal" / "2008_000001.jpg"
    coarse = read_annotation(tree / "Annotations" / "chair_pascal" / "2008_000011.mat", tree / "Images" / "chair_pascal")
    assert coarse[0].azimuth == 40.0  # distance 0: only the coarse angles are valid


def test_instance_viewpoint_holds_one_crop_per_viewpoint_bin(tree):
    """Target = category; each trajectory takes one object of each viewpoint bin."""
    data = read_instance_set(tree, "instance_viewpoint")
    assert data.factor == "instance_viewpoint"
    assert data.skipped == {"truncated_objects": 1, "occluded_objects": 1, "difficult_objects": 1,
                            "objects_without_trajectory": 1}
    # car bins (imagenet folder first): 0 -> [2008_000001, 2008_000002 #1], 2 -> [n02814533_1,
    # 2008_000002 #2], 4 -> [2008_000003]
    # -> trajectories {first of each bin} and {second of bins 0 and 2}; chair: bins 1 (x2) and 6 -> one of 2,
    # the second chair at 45 degrees alone.
    assert data.targets.tolist() == [0, 0, 0, 0, 0, 1, 1]
    assert data.trajectories.tolist() == [0, 0, 0, 1, 1, 2, 2]
    sizes = [Image.open(p).size for p in data.paths]
    assert sizes[:3] == [(20, 15), (11, 11), (40, 30)]


def test_instance_targets_one_viewpoint_bin_of_one_category(tree):
    """Under Eq. 2 the target, not the trajectory, decides what varies: an instance target
    is one (category, viewpoint bin), so only the instance changes within it."""
    data = read_instance_set(tree, "instance")
    # car bin 0 (2008_000001, 2008_000002 #1), car bin 2 (n02814533_1, 2008_000002 #2), chair bin 1.
    assert data.targets.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.trajectories.tolist() == [0, 0, 1, 1, 2, 2]
    cars = tree / "Annotations" / "car_pascal"
    assert data.sources[:4] == (f"{cars / '2008_000001.mat'}#0", f"{cars / '2008_000002.mat'}#0",
                                f"{tree / 'Annotations' / 'car_imagenet' / 'n02814533_1.mat'}#0",
                                f"{cars / '2008_000002.mat'}#1")
    assert data.skipped["objects_without_trajectory"] == 2  # car at 180, chair at 270
    everything = read_instance_set(tree, "instance", ObjectFilter(True, True, True))
    # + truncated, occluded and difficult cars at azimuth 0: bin 0 holds five.
    assert len(everything) == 9 and "truncated_objects" not in everything.skipped
    assert everything.targets.tolist() == [0] * 5 + [1, 1, 2, 2]
    only_pascal = read_instance_set(tree, "instance", ObjectFilter(subsets=("pascal",)))
    assert len(only_pascal) == 4 and only_pascal.targets.tolist() == [0, 0, 1, 1]
    first = read_instance_set(tree, "instance", max_targets=2)
    assert first.targets.tolist() == [0, 0, 1, 1] and len(first) == 4  # both car bins, no chair


def test_mat_without_record_is_named(tree):
    bad = tree / "Annotations" / "car_pascal" / "2008_000009.mat"
    scipy.io.savemat(bad, {"rec": {"objects": 1}})
    with pytest.raises(DatasetFormatError, match=r"2008_000009\.mat: no 'record' variable \(found rec\)"):
        read_instance_set(tree, "instance")
    bad.write_bytes(b"not matlab at all")
    with pytest.raises(DatasetFormatError, match=r"2008_000009\.mat: not a readable MATLAB \.mat file"):
        read_instance_set(tree, "instance")


def test_object_without_bbox_is_named(tree):
    bad = tree / "Annotations" / "car_pascal" / "2008_000009.mat"
    scipy.io.savemat(bad, {"record": {"objects": struct_array(("class",), [{"class": "car"}])}})
    with pytest.raises(DatasetFormatError, match=r"2008_000009\.mat: record\.objects\(1\) has no field 'bbox'"):
        read_annotation(bad, tree / "Images" / "car_pascal")


def test_box_outside_image_is_skipped_and_counted_and_a_missing_image_is_an_error(tree):
    write_image(tree, "car", "2008_000020", [obj("car", [50, 40, 60, 50], 1.0)])  # the image is 40 x 30
    path = write_image(tree, "car", "2008_000021", [obj("car", [1, 1, 5, 5], 2.0)])
    assert read_instance_set(tree, "instance").skipped["boxes_outside_image"] == 1
    # An annotated image that is not there is a wrong root (issue 23, finding 2), not a skip.
    (tree / "Images" / "car_pascal" / "2008_000021.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=r"car_pascal/2008_000021\.jpg: missing \(annotated in .*2008_000021\.mat\)"):
        read_instance_set(tree, "instance")
    assert path.exists()


def test_a_set_without_trajectories_names_the_root_and_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "one_per_view"
    write_image(root, "car", "2008_000001", [obj("car", [1, 1, 20, 15], 0.0)])
    write_image(root, "car", "2008_000002", [obj("car", [1, 1, 20, 15], 90.0)])
    message = (f"{root}: no instance trajectories (two or more objects of one category in one viewpoint bin); "
               "skipped: {'objects_without_trajectory': 2}")
    with pytest.raises(DatasetFormatError, match=re.escape(message)):
        read_instance_set(root, "instance")
    assert read_instance_set(root, "instance_viewpoint").targets.tolist() == [0, 0]
    write_image(root, "car", "2008_000002", [obj("car", [1, 1, 20, 15], 2.0)])  # now both at azimuth ~0
    with pytest.raises(DatasetFormatError, match="no instance_viewpoint trajectories .* in different viewpoint bins"):
        read_instance_set(root, "instance_viewpoint")


def test_bad_roots_are_named(tmp_path, tree):
    with pytest.raises(DatasetFormatError, match="no Annotations/ folder"):
        validate_pascal3d_root(tmp_path)
    validate_pascal3d_root(tree)


def test_generated_tree_reads_with_plain_loadmat_and_the_reader(data_cache):
    root = ensure_synthetic_pascal3d(num_categories=2, azimuths=4, instances_per_view=2, image_size=32,
                                     cache=str(data_cache), processes=1)
    first = sorted((root / "Annotations" / "chair_pascal").glob("*.mat"))[0]
    record = scipy.io.loadmat(first)["record"][0, 0]  # MATLAB's struct layout, as datasets.md reads it
    objects = record["objects"]
    assert objects.shape == (1, 1) and objects[0, 0]["class"][0] == "chair"
    assert objects[0, 0]["viewpoint"][0, 0]["azimuth"].shape == (1, 1)
    validate_pascal3d_root(root)
    view = read_instance_set(root, "instance_viewpoint")
    assert view.skipped == {"truncated_objects": 4}
    assert len(view) == 2 * 4 * 2 and len(set(zip(view.targets.tolist(), view.trajectories.tolist()))) == 4
    for path in view.paths:
        assert Image.open(path).size[0] <= 32
    instance = read_instance_set(root, "instance")  # a target per (category, azimuth bin), one trajectory each
    assert sorted(instance.sources) == sorted(view.sources) and len(set(instance.sources)) == len(instance)
    assert np.array_equal(instance.targets, instance.trajectories) and instance.targets.max() + 1 == 2 * 4
    # Each instance+viewpoint trajectory holds one crop per azimuth bin (0, 90, 180, 270 degrees).
    annotations = sorted((root / "Annotations" / "chair_pascal").glob("*.mat"))
    azimuths = [read_annotation(p, root / "Images" / "chair_pascal")[0].azimuth for p in annotations[:8]]
    assert sorted({viewpoint_bin(a, 15.0, 8, 3) // 3 for a in azimuths}) == [0, 2, 4, 6]
