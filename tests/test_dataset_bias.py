"""The dataset-bias sweep's search space, its pretraining sources and its Table 2 artifact (no Ray)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from datasets.image_folder import ImageFolderDataset
from datasets.synthetic.scenes import write_scenes
from orchestrator.config import TrialConfig, check, preset
from orchestrator.paper_tables import PAPER_TABLE2, log_paper_table, table2_text
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
                                                            "synthetic-objects"]
    sizes = {t.data["pretrain"].name: t.data["pretrain"].num_images("train") for t in trials}
    assert set(sizes.values()) == {300}, sizes
    for trial in trials:
        assert [p.name for p in trial.probes] == ["voc07", "voc07_boxes", "linear"] and trial.invariances == ()
        assert trial.probes[0].pair == "box,cone"
        # Set beside the paper's Table 2: Goyal et al.'s SVM protocol, whatever the preset's.
        assert [p.protocol for p in trial.probes[:2]] == ["goyal2019", "goyal2019"]
        # The VOC probe reads the same synthetic scenes the scene sets are cut from.
        assert trial.data["voc"].name == "synthetic-voc" and trial.data["voc"].trainval == 300
    assert {"data.pretrain", "seed"} <= set(knobs(trials))


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


def test_table2_layout_gives_mean_and_spread_beside_the_paper():
    text = table2_text(ROWS)
    assert "| scene images (`synthetic-coco-scenes`) | MoCo v2 | 52.00 ± 2.83 (n=2) | 31.00 ± 1.41 (n=2) |" in text
    assert "| cropped boxes of the same scenes (`synthetic-coco-boxes`) | MoCo v2 | 45.00 (n=1) |" in text
    assert text.rstrip().endswith("|")  # no trailing prose after the paper's rows
    for data, method, voc, boxes, top1, _ in PAPER_TABLE2:
        assert f"| {data} | {method} | {voc:.2f} | {boxes:.2f} | {top1:.2f} |" in text


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
    log_paper_table(client, parent, children, ["data.pretrain", "seed"], "crop_scale")  # no table for it
    assert client.list_artifacts(parent) == []
    log_paper_table(client, parent, children, ["data.pretrain", "seed"], "dataset_bias")
    text = Path(client.download_artifacts(parent, "tables/table2_dataset_bias.md", str(tmp_path))).read_text()
    assert text == table2_text([{k: v for k, v in row.items()} for row in ROWS])
