"""Data domain (Cole et al. 2022, Sec. 4.2): the video-frames and pooled sources on tiny
hand-written roots (layout, counts, determinism, shares, refusals), the non-inferiority
claim, and the study's plan. No Ray, no generator."""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.image_folder import scan_image_folder
from datasets.registry import ConfigError
from orchestrator.study import CONTRADICTED, INCONCLUSIVE, REPRODUCED, Claim, Study, analyse
from tests.test_study import sweep_module
from trainables.config import TrialConfig


def write_trackingnet(root: Path, videos: dict[str, int]) -> Path:
    """A TrackingNet chunk (``TRAIN_0/frames/<video>/<n>.jpg``) of tiny frames, each a distinct grey."""
    for v, (video, frames) in enumerate(videos.items()):
        folder = root / "TRAIN_0" / "frames" / video
        folder.mkdir(parents=True)
        for n in range(frames):
            cv2.imwrite(str(folder / f"{n}.jpg"), np.full((8, 8, 3), 10 * v + n, np.uint8))
    return root


def write_image_folder(root: Path, classes: dict[str, int]) -> Path:
    for name, count in classes.items():
        (root / "train" / name).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(root / "train" / name / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    return root


def trial(cache: Path, **data) -> TrialConfig:
    return TrialConfig().override({"data_cache": str(cache), **{f"data.pretrain{'.' + k if k else ''}": v
                                                               for k, v in data.items()}})


def relative_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "train").rglob("*") if p.is_file() or p.is_symlink())


# -- video-frames --------------------------------------------------------------------------
def test_video_frames_keep_one_frame_in_every_k_per_video_as_class_folders(tmp_path):
    videos = write_trackingnet(tmp_path / "videos", {"a": 9, "b": 5})
    config = trial(tmp_path / "cache", **{"": "video-frames", "root": str(videos), "every": 4})
    assert config.problems() == []
    root = config.root("pretrain")
    assert relative_files(root) == ["train/TRAIN_0_a/0000000.jpg", "train/TRAIN_0_a/0000004.jpg",
                                    "train/TRAIN_0_a/0000008.jpg", "train/TRAIN_0_b/0000000.jpg",
                                    "train/TRAIN_0_b/0000004.jpg"]
    # The source's own JPEG bytes, not a re-encoding.
    assert (root / "train/TRAIN_0_a/0000004.jpg").read_bytes() == (videos / "TRAIN_0/frames/a/4.jpg").read_bytes()
    samples, classes = scan_image_folder(root / "train")
    assert classes == ["TRAIN_0_a", "TRAIN_0_b"] and len(samples) == 5
    assert config.root("pretrain") == root  # built once, found again


def test_video_frames_cut_to_max_images_evenly_and_count_the_synthetic_videos(tmp_path):
    videos = write_trackingnet(tmp_path / "videos", {"a": 8, "b": 8})
    config = trial(tmp_path / "cache", **{"": "video-frames", "root": str(videos), "every": 2, "max_images": 4})
    # 8 sampled frames (0, 2, 4, 6 of each), every second one kept.
    assert relative_files(config.root("pretrain")) == [
        "train/TRAIN_0_a/0000000.jpg", "train/TRAIN_0_a/0000004.jpg",
        "train/TRAIN_0_b/0000000.jpg", "train/TRAIN_0_b/0000004.jpg"]
    assert config.data["pretrain"].num_images("train") is None  # a real root: counted when read
    synthetic = trial(tmp_path / "cache", **{"": "video-frames", "videos": 3, "frames": 10, "every": 4})
    assert synthetic.data["pretrain"].num_images("train") == 3 * 3
    capped = trial(tmp_path / "cache", **{"": "video-frames", "videos": 3, "frames": 10, "every": 4, "max_images": 5})
    assert capped.data["pretrain"].num_images("train") == 5


def test_video_frames_refuse_bad_settings_naming_the_key(tmp_path):
    bad = trial(tmp_path, **{"": "video-frames", "every": 0, "max_images": -1, "videos": 0})
    problems = " | ".join(bad.problems())
    for key in ("data.pretrain.every=0", "data.pretrain.max_images=-1", "data.pretrain.videos=0"):
        assert key in problems
    missing = trial(tmp_path, **{"": "video-frames", "root": str(tmp_path / "nowhere")})
    assert any("nowhere" in p for p in missing.problems())


# -- pooled --------------------------------------------------------------------------------
def pool_parts(tmp_path: Path) -> str:
    first = write_image_folder(tmp_path / "first", {"cat": 6, "dog": 4})
    second = write_image_folder(tmp_path / "second", {"street": 7})
    return json.dumps([{"source": "image-folder", "root": str(first)}, {"source": "image-folder", "root": str(second)}])


def test_a_pool_draws_equal_shares_the_same_way_every_time(tmp_path):
    parts = pool_parts(tmp_path)
    config = trial(tmp_path / "cache", **{"": "pooled", "parts": parts, "images": 9})
    assert config.problems() == []
    assert config.data_figures() == {"data/pretrain/pool_0_image-folder": 5.0, "data/pretrain/pool_1_image-folder": 4.0}
    root = config.root("pretrain")
    files = relative_files(root)
    first = [f for f in files if f.startswith("train/0_image-folder_")]
    second = [f for f in files if f.startswith("train/1_image-folder_street/")]
    assert len(files) == 9 and len(first) == 5 and len(second) == 4
    # Links to the parts' own images, each drawn once.
    for names, part in ((first, "first"), (second, "second")):
        assert all(os.path.realpath(root / f).startswith(str(tmp_path / part / "train")) for f in names)
    targets = {os.path.realpath(root / f) for f in files}
    assert len(targets) == 9
    # The same seed draws the same pool (a fresh cache rebuilds it identically); another seed another.
    again = trial(tmp_path / "cache2", **{"": "pooled", "parts": parts, "images": 9})
    assert {os.path.realpath(p) for p in again.root("pretrain").rglob("*.png")} == targets
    other = trial(tmp_path / "cache3", **{"": "pooled", "parts": parts, "images": 9, "seed": 1})
    assert {os.path.realpath(p) for p in other.root("pretrain").rglob("*.png")} != targets


@pytest.mark.parametrize("settings, message", [
    ({"parts": "not json"}, "parts is not JSON"),
    ({"parts": json.dumps(["synthetic-objects"])}, "two or more sources"),
    ({"parts": json.dumps(["synthetic-objects", "imagenet"])}, r"parts\[1\]: unknown data source 'imagenet'"),
    ({"parts": json.dumps(["synthetic-objects", "synthetic-aloi"])}, r"parts\[1\]: synthetic-aloi yields the aloi"),
    ({"parts": json.dumps(["synthetic-objects", "pooled"])}, "cannot hold another pool"),
    ({"parts": json.dumps(["synthetic-objects", {"source": "video-frames", "evry": 2}])},
     r"parts\[1\]\.evry: video-frames has no such setting"),
    ({"parts": json.dumps(["synthetic-objects", {"source": "video-frames", "every": "2"}])},
     r"parts\[1\]\.every='2' must be of type int"),
    ({"parts": json.dumps([{"source": "synthetic-objects", "train_per_class": 10, "classes": 2},
                           {"source": "video-frames", "videos": 2, "frames": 8}]), "images": 50},
     r"parts\[0\] \(synthetic-objects\) holds 20 train images, fewer than its share 25 of images=50"),
    ({"parts": json.dumps(["synthetic-objects", "synthetic-coco-scenes"]), "images": 1}, "at least one per part"),
])
def test_a_pool_refuses_bad_parts_before_any_trial_naming_them(tmp_path, settings, message):
    config = trial(tmp_path, **{"": "pooled", **settings})
    assert any(re.search(message, p) for p in config.problems()), config.problems()


def test_a_pool_refuses_a_real_part_smaller_than_its_share_when_resolved(tmp_path):
    config = trial(tmp_path / "cache", **{"": "pooled", "parts": pool_parts(tmp_path), "images": 16})
    assert config.problems() == []  # a real root's count is not known without reading it
    with pytest.raises(ConfigError, match=r"parts\[1\] \(image-folder\) at .*second/train holds 7 train images, "
                                          r"fewer than its share 8 of images=16"):
        config.root("pretrain")


# -- the non-inferiority claim -------------------------------------------------------------
def domain_rows(objects, pooled):
    rows = []
    for seed, (a, b) in enumerate(zip(objects, pooled)):
        for arm, value in (("synthetic-objects", a), ("pooled", b)):
            rows.append({"data.pretrain": arm, "seed": seed, "epochs": 36, "probe/linear_top1": value,
                         "ris/viewpoint/top10": 80.0, "pretrain/loss": 2.0, "method.queue_size": 128})
            rows.append({"data.pretrain": arm, "seed": seed, "epochs": 0, "probe/linear_top1": 30.0,
                         "ris/viewpoint/top10": 50.0, "pretrain/loss": 5.0, "method.queue_size": 128})
    return rows


def test_a_non_inferiority_claim_reads_the_interval_against_minus_the_margin():
    claim = Claim("not behind", "probe/linear_top1", "synthetic-objects", "pooled", margin=2.0, one_sided=True)
    assert claim.direction == "synthetic-objects >= pooled - 2"
    study = Study(knob="data.pretrain", arms=("synthetic-objects", "pooled"), claims=(claim,))
    for objects, pooled, expected in (((60, 62, 61), (50, 51, 52), REPRODUCED),  # far ahead: an equivalence would fail
                                      ((60, 61, 60.5), (60.5, 61.2, 60.9), REPRODUCED),  # within 2 behind
                                      ((50, 51, 52), (60, 62, 61), CONTRADICTED),  # 10 behind on every seed
                                      ((50, 56, 52), (51, 52, 56), INCONCLUSIVE)):  # the interval crosses -2
        result = analyse(domain_rows(objects, pooled), study).claims[0]
        assert result.verdict == expected, (objects, pooled, result.reason)
        assert (result.difference.interval.low > -2) == (expected == REPRODUCED)
    assert Study.from_json(study.to_json()).claims[0].one_sided
    flipped = Claim("x", "probe/linear_top1", "a", "b", expected_sign=-1, margin=1.0, one_sided=True)
    assert flipped.direction == "a <= b + 1"
    with pytest.raises(ValueError, match="one_sided needs a margin > 0"):
        Claim("x", "probe/linear_top1", "a", "b", one_sided=True)


# -- the study -----------------------------------------------------------------------------
def parsed(module, argv=(), study=True):
    parser = argparse.ArgumentParser()
    module.options(parser)
    args = parser.parse_args(list(argv))
    args.study = study
    return args


def test_the_data_domain_study_plans_four_domains_of_one_size_by_seeds_and_random_init_rows():
    from orchestrator.config import check, preset
    from orchestrator.search import trials_of

    module = sweep_module("data_domain")
    study = module.STUDY
    base, space = study.plan(preset("default"), module.search_space(parsed(module)), {}, [0, 1, 2])
    _, configs = trials_of(base, space)
    check(configs)
    cells = {(c.flat()["data.pretrain"], c.seed, c.epochs) for c in configs}
    assert len(configs) == len(cells) == 4 * 3 * 2
    assert {a for a, _, _ in cells} == set(study.arms) == {"synthetic-objects", "synthetic-coco-scenes",
                                                            "video-frames", "pooled"}
    for config in configs:
        source = config.data["pretrain"]
        assert source.num_images("train") == module.IMAGES  # every arm the same count
        assert config.image_size == 32 and config.method.queue_size == 128 and config.epochs in (0, 47)
        assert config.method.crop_scale_min == 0.4  # the crops that pass the loss gate at this budget
        assert [p.name for p in config.probes] == ["linear"] and [i.name for i in config.invariances] == ["viewpoint"]
        if source.name == "pooled":
            assert [s.name for s in source.sources()] == ["synthetic-objects", "synthetic-coco-scenes", "video-frames"]
            assert sum(config.data_figures().values()) == module.IMAGES
        if source.name == "synthetic-objects":  # in-domain: the probe's own generated objects
            assert source == config.data["probe"].__class__(**{k: getattr(config.data["probe"], k)
                                                              for k in ("classes", "train_per_class",
                                                                        "val_per_class", "background")})
    for claim in study.claims:  # every claim compares the in-domain arm with another on the probe
        assert claim.arm_a == "synthetic-objects" and claim.arm_b in study.arms and claim.metric == study.probe
    assert [c.one_sided for c in study.claims] == [False, False, True]


def test_the_data_domain_sweep_takes_real_roots_and_refuses_them_as_a_study(tmp_path):
    module = sweep_module("data_domain")
    argv = ["--objects-root", "/data/inat", "--scenes-root", "/data/coco", "--video-root", "/data/got10k",
            "--images", "30"]
    options = module.search_space(parsed(module, argv, study=False))["data"]["pretrain"]["grid_search"]
    assert [o["source"] for o in options] == ["image-folder", "coco-scenes", "video-frames", "pooled"]
    assert options[1]["max_images"] == 30 and options[2] == {"source": "video-frames", "every": 4,
                                                             "max_images": 30, "root": "/data/got10k"}
    assert [p["root"] for p in json.loads(options[3]["parts"])] == ["/data/inat", "/data/coco", "/data/got10k"]
    with pytest.raises(SystemExit, match="--study reads the generated domains"):
        module.search_space(parsed(module, argv))
    with pytest.raises(SystemExit, match="multiple of the generated objects' 4 classes"):
        module.search_space(parsed(module, ["--images", "30"]))
