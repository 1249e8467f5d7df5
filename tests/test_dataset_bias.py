"""The dataset-bias sweep's search space, its pretraining sources and its Table 2 artifact (no Ray)."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from datasets.coco import read_coco_instances
from datasets.image_folder import ImageFolderDataset
from datasets.synthetic.scenes import write_scenes
from datasets.voc import voc_dir
from orchestrator.config import TrialConfig, check, preset
from orchestrator.paper_tables import TABLE1, TABLE2
from orchestrator.sweep_artifacts import log_parent_artifacts
from orchestrator.tables import build
from orchestrator.search import knobs, trials_of

REPO = Path(__file__).resolve().parents[1]


def sweep_module():
    spec = importlib.util.spec_from_file_location("dataset_bias_sweep", REPO / "sweeps" / "dataset_bias.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def space_of(argv: list[str]):
    import argparse

    module = sweep_module()
    parser = argparse.ArgumentParser()
    module.options(parser)
    return module.search_space(parser.parse_args(argv))


def test_default_space_pretrains_three_equal_sized_sets_per_seed():
    _, trials = trials_of(preset("default"), space_of([]))
    check(trials)  # every trial valid before any work
    assert len(trials) == 6
    assert [t.data["pretrain"].name for t in trials[:3]] == ["synthetic-coco-scenes", "synthetic-coco-boxes",
                                                            "synthetic-coco-objects"]
    sizes = {t.data["pretrain"].name: t.data["pretrain"].num_images("train") for t in trials}
    assert set(sizes.values()) == {300}, sizes
    for trial in trials:
        assert [p.name for p in trial.probes] == ["voc07", "voc07_boxes", "linear"] and trial.invariances == ()
        assert trial.probes[0].pair == "box,cone"
        # Set beside the paper's Table 2: Goyal et al.'s SVM protocol, whatever the preset's.
        assert [p.protocol for p in trial.probes[:2]] == ["goyal2019", "goyal2019"]
        # The VOC probe reads other synthetic scenes than the pretraining sets (another seed),
        # VOC-like where they are COCO-like.
        voc, pretrain = trial.data["voc"], trial.data["pretrain"]
        assert voc.name == "synthetic-voc" and voc.trainval == 300 and voc.scenes_seed != pretrain.scenes_seed
        assert (voc.objects_per_scene, pretrain.objects_per_scene) == (2, 7)
    assert {"data.pretrain", "seed"} <= set(knobs(trials))


def small_trials(tmp_path, **changes):
    """The default sweep's three arms at 32 px on a few scenes (probe and pretraining)."""
    _, trials = trials_of(preset("default"), space_of(["--scenes", "8", "--seeds", "0"]))
    small = {"image_size": 32, "data_cache": str(tmp_path / "cache"), "data.voc.trainval": 8, "data.voc.test": 4,
             **changes}
    return [t.override(small) for t in trials]


def pixel_hashes(paths) -> dict[str, Path]:
    """Decoded-pixel digests (so a re-encoded copy still matches) of images, to their path."""
    return {hashlib.sha1(np.asarray(Image.open(p).convert("RGB")).tobytes()).hexdigest(): p for p in paths}


def images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".png") and "annotations" not in p.parts)


def test_pretraining_images_share_no_content_with_the_probe(tmp_path):
    trials = small_trials(tmp_path)
    check(trials)
    probe = voc_dir(trials[0].root("voc"))
    probe_hashes = pixel_hashes(sorted((probe / "JPEGImages").glob("*.jpg")))
    assert len(probe_hashes) == 12  # trainval + test, all distinct
    scenes, boxes, objects = trials
    pretraining = {
        "scenes": images_under(scenes.root("pretrain") / "train"),
        # The boxes are crops: their source scenes must not be probe images either.
        "boxes' source scenes": images_under(boxes.data["pretrain"].scenes_root(boxes) / "coco" / "train2017"),
        "objects": images_under(objects.root("pretrain") / "train"),
    }
    for arm, paths in pretraining.items():
        assert len(paths) == 8, arm
        shared = set(pixel_hashes(paths)) & set(probe_hashes)
        assert not shared, f"{arm}: {len(shared)} images are the VOC probe's, e.g. {probe_hashes[shared.pop()]}"
    # Asking for the probe's seed is refused before any work.
    same = scenes.override({"data.pretrain.scenes_seed": scenes.data["voc"].scenes_seed})
    with pytest.raises(ValueError, match=r"data.pretrain.scenes_seed=0 is data.voc's \(synthetic-voc\): the "
                                         r"pretraining scenes would be that probe's own images"):
        check([same])


def test_object_arm_shows_the_scenes_objects_centred_at_equal_count(tmp_path):
    scenes, boxes, objects = small_trials(tmp_path)
    # The same scene settings (seed, density, classes, count): the same scenes behind both arms.
    assert objects.data["pretrain"].settings() == {k: v for k, v in scenes.data["pretrain"].settings().items()
                                                    if k != "max_images"}
    coco = read_coco_instances(objects.data["pretrain"].scenes_root(objects) / "coco", "train2017")
    scene_of = {image.id: image for image in coco.images}
    centred = images_under(objects.root("pretrain") / "train")
    assert len(centred) == len(images_under(scenes.root("pretrain") / "train")) == 8
    for path in centred:
        scene = scene_of[int(path.stem)]  # n.png is the object of scene n
        # Its class is one of that scene's objects' (the same object pool).
        assert path.parent.name in {b.category for b in scene.boxes}, path
        # Same renderer and background: outside the objects the two images agree.
        a = np.asarray(Image.open(path).convert("RGB"), np.int16)
        b = np.asarray(Image.open(scene.path).convert("RGB"), np.int16)
        agree = (np.abs(a - b).max(axis=2) <= 12).mean()
        assert agree > 0.3, (path, agree)


def test_real_roots_are_config_values(tmp_path, monkeypatch):
    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path / "cache"))  # where crops of a real root go
    root = write_scenes(tmp_path / "scenes", num_classes=4, trainval=12, test=4, image_size=48, processes=1)
    objects = tmp_path / "imagenet" / "train" / "n0001"
    objects.mkdir(parents=True)
    (objects / "a.png").write_bytes((root / "VOC2007" / "JPEGImages" / "000001.jpg").read_bytes())
    base = TrialConfig().override({"data_cache": str(tmp_path / "cache"), "probes": "linear,voc07,voc07_boxes",
                                   "data.voc": "voc2007", "data.voc.root": str(root)})
    space = space_of(["--coco-root", str(root / "coco"), "--objects-root", str(tmp_path / "imagenet"),
                      "--scenes", "10", "--seeds", "3"])
    _, trials = trials_of(base, space)
    check(trials)
    assert [t.data["pretrain"].name for t in trials] == ["coco-scenes", "coco-boxes", "image-folder"]
    assert all(t.epochs == base.epochs for t in trials)  # real data: the preset's epochs
    scenes, boxes = (ImageFolderDataset(t.root("pretrain") / "train") for t in trials[:2])
    assert len(scenes) == 12 and len(boxes) == 10
    assert scenes[0][0].shape[1:] == (48, 48) and max(boxes[0][0].shape[1:]) < 48

    missing = base.override({"data.voc.root": str(tmp_path / "nowhere")})
    with pytest.raises(ValueError, match="nowhere: dataset root does not exist"):
        check(trials_of(missing, space)[1])


ROWS = [
    {"data.pretrain": "synthetic-coco-scenes", "seed": 0, "probe/voc07_map": 50.0, "probe/voc07_boxes_map": 30.0,
     "probe/linear_top1": 40.0, "probe/voc07_pair_map": 60.0},
    {"data.pretrain": "synthetic-coco-scenes", "seed": 1, "probe/voc07_map": 54.0, "probe/voc07_boxes_map": 32.0,
     "probe/linear_top1": 42.0, "probe/voc07_pair_map": 62.0},
    {"data.pretrain": "synthetic-coco-boxes", "seed": 0, "probe/voc07_map": 45.0, "probe/voc07_boxes_map": 35.0,
     "probe/linear_top1": 41.0},
]


# Purushwalkam & Gupta (2020), Table 2, typed here from the paper: VOC07 mAP, cropped boxes
# mAP, ImageNet linear top-1 (ResNet-50).
PAPER = [("supervised (ImageNet)", 87.5, 90.13, 76.5), ("MoCo v2 (ImageNet)", 83.3, 90.03, 67.5),
         ("PIRL (ImageNet)", 81.1, 84.82, 63.6), ("MoCo v2 (ImageNet 10%)", 62.32, 73.85, 38.53),
         ("MoCo v2 (MSCOCO, 118K images)", 64.39, 71.94, 33.64),
         ("MoCo v2 (MSCOCO cropped boxes, 118K)", 59.6, 75.29, 34.24)]


def test_table2_layout_gives_mean_and_interval_beside_the_paper():
    text = build(TABLE2, ROWS, ["data.pretrain", "seed"]).markdown
    assert "| model | runs | VOC07 mAP | cropped boxes mAP | linear top-1 | A xor B mAP (co-occurring pair) |" in text
    assert "| pretrain=synthetic-coco-scenes | 2 | 52.00 ± 25.41 | 31.00 ± 12.71 |" in text
    assert "| pretrain=synthetic-coco-boxes | 1 | 45.00 | 35.00 | 41.00 | - |" in text
    for label, voc, boxes, top1 in PAPER:
        assert f"| paper: {label} | paper | {voc:.2f} | {boxes:.2f} | {top1:.2f} |" in text
    assert "| paper: MoCo v2 (MSCOCO cropped boxes, 118K) | paper | 59.60 | 75.29 | 34.24 | 74.92 |" in text


def test_paper_table_is_logged_on_the_parent_run(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment).info.run_id
    children = []
    for row in ROWS:
        run = client.create_run(experiment, tags={"mlflow.parentRunId": parent})
        client.log_param(run.info.run_id, "data.pretrain", row["data.pretrain"])
        client.log_param(run.info.run_id, "seed", row["seed"])
        for key, value in row.items():
            if key.startswith("probe/"):
                client.log_metric(run.info.run_id, key, value)
        children.append(client.get_run(run.info.run_id))
    log_parent_artifacts(client, parent, children, ["data.pretrain", "seed"], (TABLE1,))  # no RIS: no table
    assert not client.list_artifacts(parent, "tables")
    log_parent_artifacts(client, parent, children, ["data.pretrain", "seed"], (TABLE1, TABLE2))
    text = Path(client.download_artifacts(parent, "tables/table2_dataset_bias.md", str(tmp_path))).read_text()
    assert text == build(TABLE2, ROWS, ["data.pretrain", "seed"]).markdown
    assert client.get_run(parent).data.tags["dssl.tables"] == "table1,table2"
