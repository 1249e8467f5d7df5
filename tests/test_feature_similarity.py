"""The feature-similarity command, end to end without Ray: runs holding tiny checkpoints in a
SQLite store, the layer x layer CKA logged as a new run, checked against features taken by
forward hooks and CKA from the definition."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from mlflow.tracking import MlflowClient

from orchestrator.feature_similarity import feature_similarity, image_paths, load_images, main
from tests.tiny import random_image_folder
from trainables.features import TRUNK_STAGES, extract_stage_features
from trainables.similarity import linear_cka

IMAGE_SIZE = 32


def _checkpoint(path, seed: int):
    """A project checkpoint (a supervised model's `backbone.*` keys) of a random ResNet-18."""
    torch.manual_seed(seed)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save({"model": {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}, "epoch": 1}, path)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three runs: `a`, `a_again` (the same weights) and `b` (other weights); one without a checkpoint."""
    folder = tmp_path_factory.mktemp("similarity")
    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("similarity", artifact_location=str(folder / "artifacts"))
    files = {"a": _checkpoint(folder / "a.pt", 1), "b": _checkpoint(folder / "b.pt", 2)}
    runs = {}
    for name, file in [("a", files["a"]), ("a_again", files["a"]), ("b", files["b"]), ("bare", None)]:
        run = client.create_run(experiment, run_name=name)
        client.log_param(run.info.run_id, "image_size", IMAGE_SIZE)
        if file:
            client.set_tag(run.info.run_id, "dssl.checkpoint", str(file))
        runs[name] = run.info.run_id
    images = random_image_folder(folder / "images", classes=2, per_class=6, size=40)
    return uri, runs, files, images


def _hooked_features(checkpoint, images) -> dict[str, np.ndarray]:
    """Each stage's output by forward hooks on the trunk's modules, flattened."""
    from trainables.weights import load_backbone_weights

    net = load_backbone_weights(checkpoint).build()
    out = {}
    for stage, module in TRUNK_STAGES.items():
        getattr(net, module).register_forward_hook(lambda _m, _i, o, stage=stage: out.__setitem__(stage, o))
    with torch.no_grad():
        net(images)
    return {stage: out[stage].flatten(1).numpy() for stage in TRUNK_STAGES}


def test_stage_features_are_the_trunk_outputs(store):
    _, _, files, images_root = store
    images, _ = load_images(image_paths(images_root, 8), IMAGE_SIZE)
    from trainables.weights import load_backbone_weights

    net = load_backbone_weights(files["a"]).build()
    features = extract_stage_features(net, images, batch_size=3, device="cpu")  # batches of 3 of 8 images
    assert list(features) == list(TRUNK_STAGES)
    assert features["layer1"].shape == (8, 64 * 8 * 8) and features["pool"].shape == (8, 512)
    with torch.no_grad():
        np.testing.assert_allclose(features["pool"], net(images).numpy(), rtol=1e-5, atol=1e-6)


def test_layer_by_layer_cka_of_runs_is_logged_as_a_table_and_a_heatmap(store):
    uri, runs, files, images_root = store
    run_id, matrices = feature_similarity([runs["a"], runs["a_again"], runs["b"]], uri, str(images_root),
                                          max_images=10, batch_size=4)
    assert set(matrices) == {(runs["a"], runs["a_again"]), (runs["a"], runs["b"]), (runs["a_again"], runs["b"])}
    same, other = matrices[(runs["a"], runs["a_again"])], matrices[(runs["a"], runs["b"])]
    np.testing.assert_allclose(np.diag(same), 1.0, atol=1e-9)  # the same weights: each stage is itself
    assert np.allclose(matrices[(runs["a_again"], runs["b"])], other)
    # Against features taken independently, by hooks, and CKA from its definition.
    images, kept = load_images(image_paths(images_root, 10), IMAGE_SIZE)
    assert len(kept) == 10
    fa, fb = _hooked_features(files["a"], images), _hooked_features(files["b"], images)
    stages = list(TRUNK_STAGES)
    for i, j in [(0, 0), (2, 2), (5, 5), (1, 4), (5, 0)]:
        assert other[i, j] == pytest.approx(linear_cka(fa[stages[i]], fb[stages[j]]), rel=1e-6)
    assert not np.allclose(np.diag(other), 1.0)  # different weights are not identical

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.experiment_id == client.get_run(runs["a"]).info.experiment_id
    assert run.data.tags["dssl.similarity.runs"] == ",".join([runs["a"], runs["a_again"], runs["b"]])
    assert run.data.params["n_images"] == "10" and run.data.params["image_size"] == str(IMAGE_SIZE)
    assert not run.data.metrics  # metrics only for a single pair
    label = f"{runs['a'][:8]}_vs_{runs['b'][:8]}"
    artifacts = {a.path for a in client.list_artifacts(run_id, "similarity")} | \
        {a.path for a in client.list_artifacts(run_id, "charts")}
    assert {f"similarity/{label}.json", f"similarity/{label}.csv", f"charts/cka_{label}.png"} <= artifacts
    table = json.loads(open(client.download_artifacts(run_id, f"similarity/{label}.json")).read())
    assert table["columns"] == ["stage", *stages]
    np.testing.assert_allclose(np.array([row[1:] for row in table["data"]], float), other)


def test_the_command_logs_the_diagonal_of_one_pair_and_names_a_run_without_checkpoint(store, capsys):
    uri, runs, _, images_root = store
    assert main([runs["a"], runs["b"], "--tracking-uri", uri, "--images", str(images_root), "--max-images", "6"]) == 0
    printed = capsys.readouterr().out
    assert "linear CKA" in printed and "layer4" in printed
    run_id = printed.strip().splitlines()[-1].split()[2]
    metrics = MlflowClient(uri).get_run(run_id).data.metrics
    assert set(metrics) == {f"cka/{s}" for s in TRUNK_STAGES} and all(0.0 <= v <= 1.0 + 1e-9 for v in metrics.values())

    assert main([runs["a"], runs["bare"], "--tracking-uri", uri, "--images", str(images_root)]) == 2
    assert f"run {runs['bare']} has no dssl.checkpoint tag" in capsys.readouterr().err
    assert main([runs["a"], runs["a"], "--tracking-uri", uri, "--images", str(images_root)]) == 2
    assert main([runs["a"], "0" * 32, "--tracking-uri", uri, "--images", str(images_root)]) == 2  # no such run
