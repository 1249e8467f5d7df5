"""Synthetic scenes in VOC 2007, COCO and ADE20K layouts, and the readers of those layouts (no Ray)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.ade20k import load_mask, read_ade20k
from datasets.coco import coco_image_folder, read_coco_instances
from datasets.errors import DatasetFormatError
from datasets.image_folder import ImageFolderDataset
from datasets.synthetic.objects import object_classes
from datasets.synthetic.scenes import (OBJECTS_PER_SCENE, centred_object_of_scene, cooccurring_pairs,
                                       ensure_synthetic_scenes, object_count, render_scene, scene_rng, write_scenes)
from datasets.voc import parse_annotation, read_voc_split, voc_dir


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return write_scenes(tmp_path_factory.mktemp("scenes") / "root", num_classes=4, trainval=40, test=20,
                        image_size=64, processes=1)


def copy(root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(root, target)
    return target


def test_one_set_of_scenes_in_three_layouts(scenes):
    trainval, test = read_voc_split(scenes, "trainval"), read_voc_split(scenes / "VOC2007", "test")
    assert trainval.classes == ["box", "cone", "cylinder", "sphere"]
    assert len(trainval.ids) == 40 and len(test.ids) == 20 and not set(trainval.ids) & set(test.ids)
    assert all(p.is_file() for p in trainval.paths + test.paths)
    # Class-file labels agree with the XML annotations (1 visible, 0 difficult only, -1 absent).
    for image_id, row in zip(trainval.ids, trainval.labels):
        objects = parse_annotation(trainval.annotation_path(image_id)).objects
        for cls, label in zip(trainval.classes, row):
            mine = [o for o in objects if o.name == cls]
            expected = 1 if any(not o.difficult for o in mine) else (0 if mine else -1)
            assert label == expected
    assert (trainval.labels == 1).any(axis=1).all()  # every scene shows an object

    coco = read_coco_instances(scenes / "coco", "train2017")
    assert len(coco.images) == 40 and coco.skipped == {}
    boxes = sum(len(parse_annotation(trainval.annotation_path(i)).objects) for i in trainval.ids)
    assert sum(len(i.boxes) for i in coco.images) == boxes

    ade = read_ade20k(scenes, "validation")
    assert len(ade.images) == 20 and ade.class_names == ["background", *trainval.classes]
    mask = load_mask(ade.masks[0])
    assert mask.shape == (64, 64) and mask.min() >= 1 and mask.max() <= 5
    # The mask's object pixels sit inside the annotated boxes of the same image.
    first = parse_annotation(test.annotation_path(test.ids[0]))
    for obj in first.objects:
        index = ade.class_names.index(obj.name) + 1
        ys, xs = np.nonzero(mask == index)
        x0, y0, x1, y1 = obj.pixel_edges()
        assert ((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)).any()


def cooccurrence_counts(root):
    split = read_voc_split(root, "trainval")
    present = split.labels != -1
    together = (present[:, :, None] & present[:, None, :]).sum(axis=0)
    c = split.classes.index
    paired = [together[c(a), c(b)] for a, b in cooccurring_pairs(4)]
    (a, b), (d, e) = cooccurring_pairs(4)
    unpaired = [together[c(x), c(y)] for x in (a, b) for y in (d, e)]
    return paired, unpaired


def test_paired_classes_cooccur_far_more_often(tmp_path):
    paired, unpaired = cooccurrence_counts(write_scenes(tmp_path / "s", num_classes=4, trainval=120, test=2,
                                                        image_size=32, processes=1))
    assert min(paired) > 1.6 * max(unpaired), (paired, unpaired)
    # The knob controls it: with cooccurrence=0 partners never meet (extra objects come from other pairs).
    paired, unpaired = cooccurrence_counts(write_scenes(tmp_path / "none", num_classes=4, trainval=120, test=2,
                                                        image_size=32, cooccurrence=0.0, processes=1))
    assert max(paired) == 0 and min(unpaired) > 0, (paired, unpaired)


def objects_per_scene(root: Path) -> list[int]:
    split = read_voc_split(root, "trainval")
    return [len(parse_annotation(split.annotation_path(i)).objects) for i in split.ids]


def test_scene_density_is_a_knob_with_a_coco_like_default(scenes, tmp_path):
    assert OBJECTS_PER_SCENE == 7
    counts = [object_count(np.random.default_rng(k), 7) for k in range(2000)]
    assert min(counts) == 1 and max(counts) == 13 and abs(np.mean(counts) - 7) < 0.3
    # Annotated objects per scene (a few hidden ones dropped): COCO-like by default.
    dense = objects_per_scene(scenes)
    assert 5.5 < np.mean(dense) <= 7.5 and max(dense) >= 10, dense
    sparse = objects_per_scene(write_scenes(tmp_path / "one", num_classes=4, trainval=10, test=2, image_size=32,
                                            objects_per_scene=1, processes=1))
    assert sparse == [1] * 10
    for bad in (0, 16):
        with pytest.raises(ValueError, match=rf"objects_per_scene must be from 1 to 15 .*got {bad}"):
            write_scenes(tmp_path / "bad", objects_per_scene=bad)
        with pytest.raises(ValueError, match=rf"objects_per_scene must be from 1 to 15 .*got {bad}"):
            ensure_synthetic_scenes(objects_per_scene=bad, cache=str(tmp_path))


def test_centred_object_is_a_scene_object_at_its_scale(tmp_path):
    classes = object_classes(4)
    in_scenes, alone = [], []
    for index in range(24):
        _, _, objects = render_scene(scene_rng(3, "trainval", index), classes, 0.8, 48)
        cls, image, share = centred_object_of_scene(3, index, classes, 0.8, 48, OBJECTS_PER_SCENE)
        assert cls in {o["class"] for o in objects} and image.shape == (48, 48, 3)
        in_scenes += [o["silhouette"] for o in objects]
        alone.append(share)
    ratio = np.mean(alone) / np.mean(in_scenes)
    assert 0.75 < ratio < 1.33, ratio  # the same objects and scales, only moved to the centre


def test_coco_views_are_image_folders(scenes, tmp_path, monkeypatch):
    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path))  # crops of a root not generated by build_once
    whole = coco_image_folder(scenes / "coco", "train2017", "scenes", cache=str(tmp_path))
    assert len(ImageFolderDataset(whole / "train")) == 40
    boxes = coco_image_folder(scenes / "coco", "train2017", "boxes", max_images=30, min_box_side=4, cache=str(tmp_path))
    data = ImageFolderDataset(boxes / "train")
    assert len(data) == 30 and set(data.classes) <= {"box", "cone", "cylinder", "sphere"}
    image, label = data[0]
    assert image.shape[0] == 3 and max(image.shape[1:]) < 64  # a crop, not the scene
    # Built once: the same request returns the same folder.
    assert coco_image_folder(scenes / "coco", "train2017", "boxes", max_images=30, min_box_side=4,
                             cache=str(tmp_path)) == boxes


def test_voc_xml_with_a_missing_field_names_the_file(scenes, tmp_path):
    root = copy(scenes, tmp_path)
    path = voc_dir(root) / "Annotations" / "000001.xml"
    path.write_text(path.read_text().replace("<xmax>", "<xmaxx>").replace("</xmax>", "</xmaxx>"))
    with pytest.raises(DatasetFormatError, match=r"000001\.xml: object 1 \(\w+\) has no <bndbox/xmax>"):
        parse_annotation(path)
    path.write_text("<annotation><object><name>box</name>")
    with pytest.raises(DatasetFormatError, match=r"000001\.xml: not well-formed XML"):
        parse_annotation(path)
    label_file = voc_dir(root) / "ImageSets" / "Main" / "box_test.txt"
    label_file.write_text(label_file.read_text().replace(" 1\n", " 2\n", 1).replace("-1\n", " 2\n", 1))
    with pytest.raises(DatasetFormatError, match=r"box_test\.txt, line \d+"):
        read_voc_split(root, "test")


def test_coco_annotation_of_a_missing_image_is_skipped_and_counted(scenes, tmp_path):
    root = copy(scenes, tmp_path) / "coco"
    path = root / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["image_id"] = 999999  # no such image
    data["annotations"][1]["bbox"] = [1, 2, 0, 5]  # empty box
    path.write_text(json.dumps(data))
    (root / "val2017" / data["images"][-1]["file_name"]).unlink()  # listed, but not on disk
    coco = read_coco_instances(root, "val2017")
    assert coco.skipped == {"annotations_without_image": 1, "bad_boxes": 1, "missing_images": 1}
    assert len(coco.images) == 19
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetFormatError, match=r"instances_val2017\.json: an instances file needs"):
        read_coco_instances(root, "val2017")


def test_ade_mask_of_the_wrong_size_is_skipped_and_counted(scenes, tmp_path):
    root = copy(scenes, tmp_path)
    masks = sorted((root / "ADEChallengeData2016" / "annotations" / "validation").glob("*.png"))
    Image.fromarray(np.ones((10, 12), np.uint8)).save(masks[0])
    masks[1].unlink()
    ade = read_ade20k(root, "validation")
    assert ade.skipped == {"masks_wrong_size": 1, "images_without_mask": 1} and len(ade.images) == 18
    Image.fromarray(np.ones((64, 64, 3), np.uint8)).save(masks[2])  # RGB: not a class-index mask
    with pytest.raises(DatasetFormatError, match=rf"{masks[2].name}: a class-index mask must be single-channel"):
        read_ade20k(root, "validation")
