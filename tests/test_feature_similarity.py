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


# -- a study's seed pairs ---------------------------------------------------------------------
def _perturbed_checkpoint(path, base_seed: int, seed: int, scale: float):
    """A ResNet-18 checkpoint: the weights of `base_seed` plus `scale` x seed-`seed` noise."""
    torch.manual_seed(base_seed)
    state = torchvision.models.resnet18(weights=None).state_dict()
    generator = torch.Generator().manual_seed(seed)
    for key, value in state.items():
        if value.is_floating_point() and "running" not in key:
            value.add_(scale * value.std().nan_to_num() * torch.randn(value.shape, generator=generator))
    torch.save({"model": {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}, "epoch": 1}, path)
    return path


def _trial(seed: int, epochs: int):
    from orchestrator.config import preset

    return preset("default").override({"method": "mocov2", "method.queue_size": 16, "seed": seed, "epochs": epochs,
                                       "image_size": IMAGE_SIZE})


def _study_store(folder, trained_probe: float):
    """A study's parent and children as a sweep logs them: arms mocov2 and supervised, seeds
    0-2; mocov2's trained backbones are one network plus small per-seed noise (alike), its
    random-init rows (no checkpoint, as a sweep logs them) the seeds' initial networks; the
    trained probe `trained_probe` against 40."""
    from mlflow.entities import Param

    from orchestrator.study import TAG_STUDY, Claim, Study
    from orchestrator.tracking.keys import TAG_PARENT, TAG_SWEEP

    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("study", artifact_location=str(folder / "artifacts"))
    study = Study(knob="method", arms=("mocov2", "supervised"),
                  claims=(Claim("x", "probe/linear_top1", "mocov2", "supervised"),))
    parent = client.create_run(experiment, run_name="reuse", tags={TAG_STUDY: study.to_json(), TAG_SWEEP: "reuse"})
    files = {}
    for seed in (0, 1, 2):
        for epochs in (1, 0):
            name = f"mocov2 seed={seed} epochs={epochs}"
            file = _perturbed_checkpoint(folder / f"t{seed}.pt", 7, seed, 0.05) if epochs else None
            run = client.create_run(experiment, run_name=name, tags={TAG_PARENT: parent.info.run_id}
                                    | ({"dssl.checkpoint": str(file)} if file else {}))
            client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in _trial(seed, epochs).flat().items()])
            for key, value in {"probe/linear_top1": trained_probe if epochs else 40.0,
                               "ris/viewpoint/top10": 70.0 if epochs else 50.0, "pretrain/loss": 1.0}.items():
                client.log_metric(run.info.run_id, key, value)
            client.set_terminated(run.info.run_id, "FINISHED")
            files[(seed, epochs)] = file
    return uri, parent.info.run_id, files


def test_a_studys_seed_pairs_are_compared_with_their_random_inits_and_get_a_verdict(tmp_path):
    from orchestrator.feature_similarity import SEED_PAIR_FILES, seed_pair_similarity

    images_root = random_image_folder(tmp_path / "images", classes=2, per_class=5, size=40)
    uri, parent_id, files = _study_store(tmp_path, trained_probe=60.0)
    result = seed_pair_similarity("reuse", "mocov2", uri, str(images_root), max_images=10, batch_size=4)
    assert result.pairs == ((0, 1), (0, 2), (1, 2)) and result.n_images == 10
    # Against CKA from its definition on features taken by hooks: pair (0, 2) at layer4.
    images, _ = load_images(image_paths(images_root, 10), IMAGE_SIZE)
    a, b = _hooked_features(files[(0, 1)], images), _hooked_features(files[(2, 1)], images)
    assert result.trained["layer4"][1] == pytest.approx(linear_cka(a["layer4"], b["layer4"]), rel=1e-6)
    # A random-init row's weights: its seed's initial model, as the sweep's evaluation built it.
    from trainables.pretrain import build_model

    for seed in (0, 2):
        model = build_model(_trial(seed, 0))
        torch.save({"model": model.state_dict(), "epoch": -1}, tmp_path / f"initial{seed}.pt")
    a, b = (_hooked_features(tmp_path / f"initial{seed}.pt", images) for seed in (0, 2))
    assert result.initial["layer4"][1] == pytest.approx(linear_cka(a["layer4"], b["layer4"]), rel=1e-6)
    # Alike trained networks, independent initialisations: the claim holds at the last stage.
    last = list(TRUNK_STAGES)[-1]
    assert min(result.trained[last]) > max(result.initial[last])
    assert result.claims[last].verdict == "reproduced"
    assert result.claims[last].difference.seeds == (0, 1, 2)  # the three pairs
    client = MlflowClient(uri)
    logged = {a.path for folder in ("tables", "charts") for a in client.list_artifacts(parent_id, folder)}
    assert {name.format(arm="mocov2") for name in SEED_PAIR_FILES} <= logged
    text = open(client.download_artifacts(parent_id, "tables/feature_similarity_mocov2.md")).read()
    assert f"| {last} |" in text and "reproduced" in text and "not independent" in text


def test_seed_pairs_of_an_arm_that_did_not_learn_are_not_read_and_bad_references_are_refused(tmp_path, capsys):
    from orchestrator.feature_similarity import main, seed_pair_similarity

    images_root = random_image_folder(tmp_path / "images", classes=2, per_class=3, size=40)
    uri, _, _ = _study_store(tmp_path, trained_probe=40.5)  # +0.5 over random init: below the gate's +2
    result = seed_pair_similarity("reuse", "mocov2", uri, str(images_root), max_images=6, batch_size=6)
    assert result.claims["pool"].verdict == "inconclusive: not learned"
    assert main(["--study", "reuse", "--arm", "byol", "--tracking-uri", uri, "--images", str(images_root)]) == 2
    assert "arm 'byol' is not one of the study's arms" in capsys.readouterr().err
    assert main(["--study", "reuse", "--arm", "supervised", "--tracking-uri", uri]) == 2
    assert "arm supervised has 0 seed(s)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--study", "reuse", "--tracking-uri", uri])  # no --arm
