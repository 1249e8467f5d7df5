"""Scoring any checkpoint: the three formats give the same weights and the same scores,
the cached Ray Data path matches the in-process one, and a rescore extracts nothing."""
from __future__ import annotations

import pytest
import torch
import torchvision
from mlflow.tracking import MlflowClient

from orchestrator.score import evaluation_params, evaluation_problems, score_checkpoint
from tests.tiny import tiny_config
from trainables.evaluation import evaluate
from trainables.weights import CheckpointFormatError, load_backbone_weights


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One random ResNet-18 written the project's way, official MoCo's way and torchvision's way."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None)
    state = net.state_dict()
    torch.save({"model": {f"encoder_q.backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}
                | {"queue": torch.zeros(4, 8)}, "epoch": 1}, folder / "project.pt")
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in state.items()}
                | {"module.queue": torch.zeros(4, 8)}, "arch": "resnet18", "epoch": 200}, folder / "moco.pth.tar")
    torch.save(state, folder / "torchvision.pth")
    return folder


def test_the_three_formats_give_the_same_backbone(checkpoints):
    loaded = [load_backbone_weights(checkpoints / name) for name in ("project.pt", "moco.pth.tar", "torchvision.pth")]
    assert [w.source_format for w in loaded] == ["project", "official-moco", "torchvision"]
    assert {w.arch for w in loaded} == {"resnet18"} and len({w.digest for w in loaded}) == 1
    x = torch.rand(2, 3, 32, 32)
    outputs = [w.build()(x) for w in loaded]
    assert outputs[0].shape == (2, 512) and all(torch.equal(outputs[0], o) for o in outputs[1:])


def test_a_file_of_the_wrong_format_is_named(tmp_path):
    bad = tmp_path / "notes.pt"
    torch.save({"weights": [1, 2, 3]}, bad)
    with pytest.raises(CheckpointFormatError, match=f"{bad}: neither a project checkpoint"):
        load_backbone_weights(bad)
    with pytest.raises(CheckpointFormatError, match="does not exist"):
        load_backbone_weights(tmp_path / "missing.pt")
    torch.save({"conv1.weight": torch.zeros(3, 3)}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointFormatError, match="match no torchvision"):
        load_backbone_weights(tmp_path / "odd.pth")


def test_scoring_ignores_the_pretraining_settings_and_logs_only_evaluation_keys(data_cache, tmp_path):
    trial = tiny_config(data_cache).override({"data.pretrain": "image-folder"})  # no root: pretraining only
    assert trial.problems() and evaluation_problems(trial) == []
    params = evaluation_params(trial)
    assert "invariances" in params and "data.aloi" in params and "data.probe" in params
    assert not [k for k in params if k.startswith(("method", "data.pretrain", "lr", "epochs"))]


def feature_runs(tmp_path) -> list:
    """The features the test's cache holds, one entry per extraction run."""
    return [p for p in (tmp_path / "cache" / "features").iterdir() if p.is_dir() and not p.name.startswith(".")]


@pytest.mark.slow
def test_every_format_scores_the_same_as_in_process_and_a_rescore_extracts_nothing(ray_session, checkpoints,
                                                                                    data_cache, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    trial = tiny_config(data_cache).override({"invariances": "viewpoint", "data_cache": str(tmp_path / "cache")})
    first, features = score_checkpoint(checkpoints / "project.pt", trial, uri, "scores", max_actors=1)
    assert features.extracted > 0 and features.reused == 0
    # One extraction run (one actor pool) for the RIS set and the linear probe's two splits.
    assert len(feature_runs(tmp_path)) == 1
    # The same weights the project's way, features in process: the same scores.
    weights = load_backbone_weights(checkpoints / "project.pt")
    in_process = evaluate(weights.build(), trial.override({"arch": weights.arch}), "cpu")
    assert set(first) == set(in_process)
    for key, value in in_process.items():
        assert first[key] == pytest.approx(value, abs=1e-6), key
    for name in ("moco.pth.tar", "torchvision.pth"):  # same weights: every feature from the cache
        again, cached = score_checkpoint(checkpoints / name, trial, uri, "scores", max_actors=1)
        assert cached.extracted == 0 and cached.reused == features.extracted
        assert again == first
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("scores").experiment_id])
    assert sorted(r.data.params["checkpoint.format"] for r in runs) == ["official-moco", "project", "torchvision"]
    assert all(r.data.metrics["ris/viewpoint/top10"] == first["ris/viewpoint/top10"] for r in runs)
    # A sweep's checkpoint folder (holding checkpoint.pt) scores as its file does.
    folder = tmp_path / "checkpoint_epoch_0001"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes((checkpoints / "project.pt").read_bytes())
    assert score_checkpoint(folder, trial, "", "scores", max_actors=1)[0] == first
    # Another scored layer is another cache entry, and matches the in-process path there too.
    layer3 = trial.override({"eval_layer": "layer3"})
    deeper, extracted = score_checkpoint(checkpoints / "project.pt", layer3, "", "scores", max_actors=1)
    assert extracted.extracted > 0 and extracted.reused == 0 and len(feature_runs(tmp_path)) == 2
    assert deeper["ris/viewpoint/top10"] == pytest.approx(
        evaluate(weights.build(), layer3.override({"arch": weights.arch}), "cpu")["ris/viewpoint/top10"], abs=1e-6)


def test_the_scored_layer_is_the_pooled_stage_output(checkpoints):
    from trainables.models import scored_layer

    trunk = load_backbone_weights(checkpoints / "torchvision.pth").build()
    x = torch.rand(2, 3, 64, 64)
    assert scored_layer(trunk, "pool") is trunk
    with torch.no_grad():
        manual = trunk.layer2(trunk.layer1(trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))))
        assert torch.allclose(scored_layer(trunk, "layer2")(x), manual.mean(dim=(2, 3)), atol=1e-6)
        assert scored_layer(trunk, "layer3")(x).shape == (2, 256)
    assert any("eval_layer='layer9'" in p for p in tiny_config("").override({"eval_layer": "layer9"}).problems())
