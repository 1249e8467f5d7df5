"""The evaluation stage as Ray work of its own: what it asks Ray for, where it extracts
features, that it runs outside the trial's process with those resources, and that an error
inside surfaces as itself."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from datasets.errors import DatasetFormatError
from datasets.registry import ConfigError
from trainables.config import TrialConfig
from trainables.evaluation import (EVALUATION_MEMORY_FLOOR, IN_PROCESS_MAX_IMAGES, estimated_evaluation_memory,
                                   extracts_in_process, fitted_to_this_node, plan_evaluation, run_evaluation)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    from datasets.cache import CACHE_ENV_VAR

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))


def probe_folder(root, per_class: int = 6):
    """A linear probe's image folder: 32 px random JPEGs, two classes, train and val."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(2 * per_class):
            folder = root / split / f"class{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return root


def probe_trial(tmp_path, **changes) -> TrialConfig:
    """An epochs=0 ResNet-18 trial at 32 px scoring only a linear probe on 24 images."""
    return TrialConfig().override({"epochs": 0, "image_size": 32, "eval_batch_size": 8, "invariances": "",
                                   "probes": "linear", "data.probe": "image-folder",
                                   "data.probe.root": str(probe_folder(tmp_path / "probe"))}).override(changes)


def test_features_are_extracted_in_process_for_cpu_trials_on_one_node_or_few_images():
    assert extracts_in_process(use_gpu=False, multi_node=False, images=10 * IN_PROCESS_MAX_IMAGES)
    assert extracts_in_process(use_gpu=False, multi_node=True, images=IN_PROCESS_MAX_IMAGES)
    assert not extracts_in_process(use_gpu=False, multi_node=True, images=IN_PROCESS_MAX_IMAGES + 1)
    assert not extracts_in_process(use_gpu=True, multi_node=False, images=10)  # GPU actors


def test_the_memory_request_is_estimated_from_images_and_width_or_set_by_the_trial(tmp_path):
    trial = probe_trial(tmp_path)
    plan = plan_evaluation(trial, multi_node=True)
    # 24 images of ResNet-18's 512 pooled floats, held twice, over the floor.
    assert plan.memory == estimated_evaluation_memory(24, 512) == 24 * 512 * 4 * 2 + EVALUATION_MEMORY_FLOOR
    assert plan.in_process and plan.num_cpus == trial.cpus_per_worker
    wide = plan_evaluation(trial.override({"eval_layer": "layer4_2x2", "image_size": 64}), multi_node=True)
    assert wide.memory == estimated_evaluation_memory(24, 4 * 512)  # a 2 x 2 grid of layer4
    assert plan_evaluation(trial.override({"eval_memory_gb": 1.5}), multi_node=True).memory == int(1.5 * 1024**3)
    assert not plan_evaluation(trial.override({"use_gpu": True}), multi_node=True).in_process
    assert any("eval_memory_gb" in p for p in trial.override({"eval_memory_gb": -1}).problems())
    assert "eval_memory_gb" not in trial.flat()  # placement, not a param


def test_on_one_node_the_request_fits_the_node_or_a_set_one_is_refused():
    assert fitted_to_this_node(3 * 1024**3, explicit=False, node_memory=4 * 1024**3) == 3 * 1024**3
    assert fitted_to_this_node(5 * 1024**3, explicit=False, node_memory=4 * 1024**3) == 4 * 1024**3
    with pytest.raises(ConfigError, match="eval_memory_gb=5 is more than"):
        fitted_to_this_node(5 * 1024**3, explicit=True, node_memory=4 * 1024**3)


@pytest.mark.slow
def test_the_evaluation_runs_in_a_ray_task_with_the_resources_it_asked_for(ray_session, tmp_path):
    trial = probe_trial(tmp_path, cpus_per_worker=2)
    plan = plan_evaluation(trial)
    run = run_evaluation(trial, plan=plan)
    assert run.pid != os.getpid()  # not in the trial function's process
    assert run.assigned_resources == plan.requested() == {"CPU": 2.0, "memory": float(plan.memory)}
    assert 0.0 <= run.metrics["probe/linear_top1"] <= 100.0 and run.metrics["data/skipped_images"] == 0


@pytest.mark.slow
def test_a_bad_annotation_inside_the_task_is_raised_as_itself(ray_session, tmp_path):
    from datasets.synthetic.pascal3d import write_pascal3d

    root = write_pascal3d(tmp_path / "pascal3d", num_categories=2, azimuths=2, instances_per_view=2,
                          truncated_per_category=0, image_size=32, processes=1)
    bad = sorted((root / "Annotations").rglob("*.mat"))[1]
    bad.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    trial = probe_trial(tmp_path, invariances="instance", probes="", **{"data.pascal3d": "pascal3d",
                                                                        "data.pascal3d.root": str(root)})
    with pytest.raises(DatasetFormatError) as err:
        run_evaluation(trial)
    assert type(err.value) is DatasetFormatError  # itself, not Ray's wrapper
    assert str(bad) in str(err.value) and "not a readable MATLAB .mat file" in str(err.value)
