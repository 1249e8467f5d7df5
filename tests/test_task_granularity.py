"""Task granularity (Cole et al. 2022, Sec. 4.4): the iNat21 hierarchy reader on files in its
layout, the synthetic hierarchy set, the hierarchy probe on small arrays, the study's plan
and its gate for a supervised arm. No Ray."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest

from datasets.errors import DatasetFormatError
from datasets.inat21 import RANKS, image_dir_name, read_inat21_split, write_inat21_split
from orchestrator.study import NOT_LEARNED, REPRODUCED, Study, analyse, learning_gate
from trainables.probes.hierarchy import DROP, first_per_category, hierarchy_top1, parse_ranks, rank_metric
from trainables.probes.linear import linear_probe_top1
from tests.test_study import sweep_module


def taxon(kingdom, family, genus, epithet):
    return {"kingdom": kingdom, "phylum": f"{kingdom}P", "class": f"{kingdom}C", "order": f"{family}O",
            "family": family, "genus": genus, "specific_epithet": epithet}


# Two genera named "Alpha" in different families: a rank's label is its path, so they stay two.
TAXA = [taxon("Animalia", "Fa", "Alpha", "one"), taxon("Animalia", "Fa", "Alpha", "two"),
        taxon("Animalia", "Fb", "Alpha", "three"), taxon("Plantae", "Fc", "Beta", "four")]


def write_split(root, split, per_category=2, taxa=TAXA):
    files = [(f"{split}/{image_dir_name(c, t)}/{i}.jpg", c, 8, 8) for c, t in enumerate(taxa) for i in range(per_category)]
    return write_inat21_split(root, split, taxa, files)


def test_reader_reads_the_layout_it_writes(tmp_path):
    path = write_split(tmp_path, "val")
    data = json.loads(path.read_text())
    assert set(data) == {"info", "images", "categories", "annotations", "licenses"}
    assert data["categories"][0]["image_dir_name"] == "00000_Animalia_AnimaliaP_AnimaliaC_FaO_Fa_Alpha_one"
    assert data["categories"][0]["name"] == "Alpha one"
    split = read_inat21_split(tmp_path, "val")
    assert split.paths[0] == tmp_path / "val" / "00000_Animalia_AnimaliaP_AnimaliaC_FaO_Fa_Alpha_one" / "0.jpg"
    assert split.category_index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len(set(split.rank_labels("kingdom"))) == 2
    assert len(set(split.rank_labels("genus"))) == 3  # Fa's Alpha, Fb's Alpha, Beta
    assert len(set(split.rank_labels("species"))) == 4
    assert len(set(split.rank_labels("family"))) == 3
    with pytest.raises(ValueError, match="unknown rank"):
        split.rank_labels("tribe")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("annotations"), "no 'annotations' list"),
    (lambda d: d["categories"][1].pop("genus"), r"categories\[1\] lacks genus"),
    (lambda d: d["annotations"][2].update(category_id=99), r"annotations\[2\]: category_id 99 is no category"),
    (lambda d: d["annotations"][2].update(image_id=99), r"annotations\[2\]: image_id 99 is no image"),
    (lambda d: d["annotations"].pop(), "1 images have no annotation"),
    (lambda d: d["images"][0].pop("file_name"), r"images\[0\] lacks an id or a file_name"),
])
def test_reader_names_the_file_and_the_fault(tmp_path, change, message):
    path = write_split(tmp_path, "train")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match=f"{path}: .*{message}"):
        read_inat21_split(tmp_path, "train")


def test_reader_refuses_a_missing_or_broken_file(tmp_path):
    with pytest.raises(DatasetFormatError, match=f"{tmp_path / 'val.json'}: missing"):
        read_inat21_split(tmp_path, "val")
    (tmp_path / "val.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match="not readable JSON"):
        read_inat21_split(tmp_path, "val")


def test_hierarchy_probe_matches_the_linear_probe_per_rank_and_the_drop():
    """Features that carry the kingdom but not the species within it: the coarse probe is
    right, the fine one near chance within a kingdom, and each rank's top-1 is the linear
    probe fit with that rank's labels."""
    from datasets.inat21 import Inat21Split

    rng = np.random.default_rng(0)
    split = Inat21Split(paths=[], category_index=np.zeros(0, np.int64), categories=TAXA)
    train_category, val_category = rng.integers(0, 4, 200), rng.integers(0, 4, 100)
    kingdom = np.asarray([0, 0, 0, 1])

    def features(category):
        return np.eye(2)[kingdom[category]] * 5 + rng.normal(size=(len(category), 2))

    train_x, val_x = features(train_category), features(val_category)
    metrics = hierarchy_top1(train_x, train_category, val_x, val_category, split, split,
                             ["kingdom", "genus", "species"], seed=0, max_iter=200)
    assert set(metrics) == {rank_metric(r) for r in ("kingdom", "genus", "species")} | {DROP}
    genus = np.asarray([0, 0, 1, 2])  # Fa's Alpha, Fb's Alpha, Beta in sorted path order
    assert metrics[rank_metric("genus")] == linear_probe_top1(train_x, genus[train_category], val_x,
                                                              genus[val_category], seed=0, max_iter=200)
    assert metrics[rank_metric("kingdom")] > 95
    assert metrics[rank_metric("species")] < 70
    assert metrics[DROP] == metrics[rank_metric("kingdom")] - metrics[rank_metric("species")] > 25


def test_ranks_are_checked_and_training_images_capped_per_category():
    assert parse_ranks("kingdom, genus,species") == ["kingdom", "genus", "species"]
    for bad in ("species,kingdom", "kingdom", "kingdom,tribe", "genus,genus"):
        with pytest.raises(ValueError):
            parse_ranks(bad)
    assert parse_ranks(",".join(RANKS)) == list(RANKS)
    assert first_per_category(np.asarray([0, 1, 0, 0, 1, 2]), 2).tolist() == [0, 1, 2, 4, 5]
    assert first_per_category(np.asarray([0, 1, 0]), 0).tolist() == [0, 1, 2]


def test_synthetic_hierarchy_is_an_inat21_root_and_an_image_folder(tmp_path):
    from datasets.image_folder import scan_image_folder
    from datasets.synthetic.hierarchy import VARIANTS, hierarchy_taxa, write_hierarchy

    root = write_hierarchy(tmp_path, families=2, variants=2, train_per_species=1, val_per_species=1,
                           image_size=16, processes=1, background="plain")
    train = read_inat21_split(root, "train")
    assert len(train.paths) == 8 and all(p.is_file() for p in train.paths)
    assert [len(set(train.rank_labels(r))) for r in ("kingdom", "phylum", "family", "genus", "species")] == [2, 2, 2, 4, 8]
    samples, classes = scan_image_folder(root / "val")
    assert classes == [image_dir_name(i, t) for i, t in enumerate(hierarchy_taxa(2, 2))] and len(samples) == 8
    # The variants differ in colour: the red variant's object is redder than the green one's.
    import cv2

    def mean_rgb(path):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(float)
        return image[image.sum(axis=2) > 40].mean(axis=0)

    red, green = (mean_rgb(train.paths[i]) for i in (0, 1))  # sphere red, sphere green
    assert VARIANTS[0][0] == "red" and VARIANTS[1][0] == "green"
    assert red[0] - red[1] > 0 > green[0] - green[1]


def test_task_granularity_study_plans_methods_by_seeds_and_random_init():
    from orchestrator.config import check, preset
    from orchestrator.search import trials_of

    module = sweep_module("task_granularity")
    parser = argparse.ArgumentParser()
    module.options(parser)
    args = parser.parse_args([])
    base, space = module.STUDY.plan(preset("default"), module.search_space(args), {}, [0, 1, 2])
    _, configs = trials_of(base, space)
    check(configs)
    cells = {(c.method.name, c.seed, c.epochs) for c in configs}
    assert len(configs) == 12 == len(cells)
    assert {m for m, _, _ in cells} == {"supervised", "mocov2"} and {e for _, _, e in cells} == {20, 0}
    for config in configs:
        flat = config.flat()
        assert config.image_size == 32 and [p.name for p in config.probes] == ["hierarchy"]
        assert flat["data.pretrain"] == flat["data.hierarchy"] == "synthetic-hierarchy"
        assert flat["data.pretrain.background"] == flat["data.hierarchy.background"] == "plain"
        if config.method.name == "mocov2":
            assert config.method.queue_size == 128 and config.method.temperature == 0.1
    # The supervised arm's guessing loss is ln(C) over the classes it trained on (its figure).
    assert module.STUDY.class_arms == ("supervised",)


def test_a_supervised_trial_reports_the_classes_its_chance_loss_is_over(tmp_path):
    from tests.tiny import image_folder_trial, random_image_folder

    trial = image_folder_trial(random_image_folder(tmp_path, classes=3), method="supervised")
    assert trial.method.prepare(trial) == {"data/pretrain_classes": 3.0}
    assert trial.method.build_model(trial).classifier.out_features == 3


def granularity_rows(drops_ssl, drops_sup, sup_loss):
    study = sweep_module("task_granularity").STUDY
    rows = []
    for seed, (d_ssl, d_sup) in enumerate(zip(drops_ssl, drops_sup)):
        common = {"seed": seed, "status": "FINISHED", "ris/viewpoint/top10": 80.0, study.probe: 60.0}
        rows.append(common | {"method": "mocov2", "epochs": 20, "method.queue_size": 128, "pretrain/loss": 3.0,
                              DROP: d_ssl})
        rows.append(common | {"method": "supervised", "epochs": 20, "pretrain/loss": sup_loss, DROP: d_sup,
                              "data/pretrain_classes": 24})
        for method in ("mocov2", "supervised"):
            rows.append(common | {"method": method, "epochs": 0, "ris/viewpoint/top10": 60.0, study.probe: 40.0,
                                  DROP: 0.0})
    return study, rows


def test_gate_holds_a_supervised_arm_to_its_own_guessing_loss_and_the_drop_claim_is_paired():
    study, rows = granularity_rows((30, 35, 32), (10, 12, 9), sup_loss=1.0)
    result = analyse(rows, study)
    assert learning_gate(rows, study)["supervised"].passed
    gap = result.claims[0]
    assert gap.verdict == REPRODUCED and gap.difference.differences == (20, 23, 23)
    _, rows = granularity_rows((30, 35, 32), (10, 12, 9), sup_loss=math.log(24) - 0.1)
    failures = learning_gate(rows, study)["supervised"].failures
    assert any("is not below ln(24) - 0.5 = 2.68" in f for f in failures)
    assert analyse(rows, study).claims[0].verdict == NOT_LEARNED
    assert Study.from_json(study.to_json()) == study
    from orchestrator.study import verdict_markdown

    assert "ln(C) for supervised" in verdict_markdown(analyse(rows, study))


def test_an_inat21_root_replaces_the_synthetic_set_in_both_roles(tmp_path):
    from orchestrator.config import preset
    from orchestrator.search import trials_of

    module = sweep_module("task_granularity")
    parser = argparse.ArgumentParser()
    module.options(parser)
    _, configs = trials_of(preset("default"), module.search_space(parser.parse_args(["--inat21-root", str(tmp_path)])))
    for config in configs:
        flat = config.flat()
        assert flat["data.pretrain"] == flat["data.hierarchy"] == "image-folder"
        assert flat["data.pretrain.root"] == flat["data.hierarchy.root"] == str(tmp_path)


def test_probe_evaluates_each_rank_from_the_annotation_files(tmp_path):
    """The probe's wiring: the images the JSON names, with their categories, reach the
    features; the cap keeps the first images of each category."""
    from types import SimpleNamespace

    from trainables.probes.hierarchy import HierarchyProbe

    write_split(tmp_path, "train", per_category=6)
    write_split(tmp_path, "val", per_category=3)
    seen = []

    class Features:
        transform = None

        def __call__(self, dataset):
            seen.append(list(dataset.paths))
            labels = np.asarray(dataset.labels)
            return np.eye(4)[labels] * 5 + np.random.default_rng(len(seen)).normal(size=(len(labels), 4)), labels

    probe = HierarchyProbe(ranks="kingdom,species", max_train_per_category=4, max_iter=200)
    metrics = probe.evaluate(tmp_path, Features(), SimpleNamespace(seed=0))
    assert len(seen[0]) == 16 and all(p.name in {"0.jpg", "1.jpg", "2.jpg", "3.jpg"} for p in seen[0])
    assert len(seen[1]) == 12
    assert metrics[rank_metric("kingdom")] == metrics[rank_metric("species")] == 100.0 and metrics[DROP] == 0.0
    assert HierarchyProbe(ranks="species,kingdom").problems(None) and not probe.problems(None)


def test_study_flag_plans_the_task_granularity_study(monkeypatch):
    import orchestrator.sweep
    from orchestrator.cli import run_cli
    from orchestrator.study import TAG_STUDY

    seen = {}

    def fake_run_sweep(base, space, settings):
        seen.update(base=base, space=space, tags=settings.tags)
        raise KeyboardInterrupt

    monkeypatch.setattr(orchestrator.sweep, "run_sweep", fake_run_sweep)
    module = sweep_module("task_granularity")
    args = ("task_granularity", module.__doc__, module.options, module.search_space)
    assert run_cli(*args, argv=["--study"], study=module.STUDY) == 130
    assert seen["space"]["seed"] == {"grid_search": [0, 1, 2]} and seen["space"]["epochs"] == {"grid_search": [20, 0]}
    assert [o["name"] for o in seen["space"]["method"]["grid_search"]] == ["supervised", "mocov2"]
    assert Study.from_json(seen["tags"][TAG_STUDY]) == module.STUDY
