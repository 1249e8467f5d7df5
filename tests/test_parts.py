"""Parts plug in from outside the project: a toy method, invariance set, probe and data
source, registered here, run through a tiny sweep end to end (Tune -> Train -> evaluation
-> MLflow) without any project file knowing them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from ray import tune
from torch import nn
from torch.utils.data import Dataset

from datasets.cache import build_once, cache_key, cache_root
from datasets.image_folder import ImagePathDataset
from datasets.invariance_sets import INVARIANCE_SETS, InvarianceSet, InvarianceSetPart
from datasets.registry import Part, Registry
from datasets.sources import DATA_SOURCES, DataRole, DataSource
from orchestrator.config import SweepSettings, TrialConfig
from orchestrator.sweep import run_sweep
from orchestrator.tracking import TAG_PARENT
from trainables.methods import METHODS, Method
from trainables.probes import PROBES, Probe

TOY_LAYOUT = "toy-pngs"  # <root>/<i>.png and <root>/meta.json
TOY_ROLE = {"toy": DataRole(TOY_LAYOUT, default_source="toy-squares")}


@DATA_SOURCES.register
@dataclass(frozen=True)
class ToySquares(DataSource):
    """Bright squares at a few positions: target = position, 4 brightness levels each."""

    name: ClassVar[str] = "toy-squares"
    layout: ClassVar[str] = TOY_LAYOUT
    positions: int = 6

    def problems(self, trial: Any) -> list[str]:
        return [] if self.positions >= 2 else [f"positions={self.positions} must be at least 2"]

    def resolve(self, trial: Any) -> Path:
        size = int(trial.image_size)

        def build(folder: Path) -> None:
            from torchvision.io import write_png

            meta = []
            for target in range(self.positions):
                for level in range(4):
                    image = torch.zeros(3, size, size, dtype=torch.uint8)
                    x = target * (size - 8) // (self.positions - 1)
                    image[:, 8:16, x:x + 8] = 60 * (level + 1)
                    write_png(image, str(folder / f"{len(meta)}.png"))
                    meta.append(target)
            (folder / "meta.json").write_text(json.dumps(meta))

        key = cache_key("toy-squares", 1, positions=self.positions, size=size)
        return build_once(cache_root(str(trial.data_cache)) / key, build)


class ToySquaresDataset(Dataset):
    def __init__(self, root: Path, transform):
        self.paths = sorted(root.glob("*.png"), key=lambda p: int(p.stem))
        self.images = ImagePathDataset(self.paths, transform=transform)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index]


class ToyNet(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.backbone.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Flip invariance, kept from collapsing by a variance term.
        a, b = self.backbone(x), self.backbone(x.flip(-1))
        return F.mse_loss(a, b) + F.relu(1.0 - a.std(dim=0)).mean()


@METHODS.register
@dataclass(frozen=True)
class ToyFlip(Method):
    name: ClassVar[str] = "toy-flip"
    roles: ClassVar[dict[str, DataRole]] = TOY_ROLE
    width: int = 32  # RIS top25 needs at least 25 units

    def problems(self, trial: Any) -> list[str]:
        return [] if self.width >= 1 else [f"width={self.width} must be at least 1"]

    def build_model(self, trial: Any) -> nn.Module:
        return ToyNet(self.width)

    def train_dataset(self, roots: dict[str, Path], trial: Any) -> Dataset:
        return ToySquaresDataset(roots["toy"], lambda image: image.float() / 255.0)

    def training_step(self, model: nn.Module, inputs: Any, labels: torch.Tensor) -> torch.Tensor:
        return model(inputs)

    def on_step_end(self, model: nn.Module, step: int, total_steps: int) -> None:
        model.backbone.steps.fill_(step)


@INVARIANCE_SETS.register
@dataclass(frozen=True)
class ToyBrightness(InvarianceSetPart):
    """One trajectory per position: only the brightness varies along it."""

    name: ClassVar[str] = "toy_brightness"
    roles: ClassVar[dict[str, DataRole]] = TOY_ROLE

    def trajectories(self, root: Path, max_targets: int) -> InvarianceSet:
        targets = np.asarray(json.loads((root / "meta.json").read_text()), dtype=np.int64)
        paths = [root / f"{i}.png" for i in range(len(targets))]
        return InvarianceSet(self.name, paths, targets, targets.copy())


@PROBES.register
@dataclass(frozen=True)
class ToySteps(Probe):
    """Reports what the method's step hook left in the backbone, and the images it saw."""

    name: ClassVar[str] = "toy_steps"
    roles: ClassVar[dict[str, DataRole]] = TOY_ROLE

    def evaluate(self, root: Path, features: Any, trial: Any) -> dict[str, float]:
        x, _ = features(sorted(root.glob("*.png")))
        return {"probe/toy_steps": float(features.backbone.steps), "probe/toy_images": float(len(x))}


def toy_trial(data_cache) -> TrialConfig:
    return TrialConfig(method=ToyFlip(), invariances=(ToyBrightness(),), probes=(ToySteps(),),
                       image_size=32, epochs=2, batch_size=8, eval_batch_size=32, ris_max_objects=0,
                       data_cache=str(data_cache))


def test_a_toy_trial_is_typed_validated_and_logs_only_its_parts_keys(data_cache):
    trial = toy_trial(data_cache)
    assert set(trial.data) == {"toy"} and trial.data["toy"] == ToySquares()
    assert trial.problems() == []
    assert TrialConfig.from_nested(trial.to_nested()) == trial
    assert trial.override({"method.width": 0, "data.toy.positions": 1}).problems() == [
        "method.width=0 must be at least 1", "data.toy.positions=1 must be at least 2"]
    assert trial.part_modules() == {__name__}


def test_registries_refuse_a_taken_name_and_a_part_that_is_not_a_dataclass():
    registry = Registry("thing", Part)

    @dataclass(frozen=True)
    class One(Part):
        name: ClassVar[str] = "one"

    registry.register(One)
    with pytest.raises(ValueError, match="already registered"):
        @registry.register
        @dataclass(frozen=True)
        class Other(Part):
            name: ClassVar[str] = "one"

    with pytest.raises(TypeError, match="dataclass"):
        @registry.register
        class Plain(Part):
            name: ClassVar[str] = "plain"
    assert registry.names() == ("one",)


@pytest.mark.slow
def test_toy_parts_run_through_a_sweep_end_to_end(ray_session, data_cache, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    base = toy_trial(data_cache)
    # One trial: the plug-in is the claim; several trials are the shared crop_sweep's (conftest).
    # Its width is not the default (32), so the grid set the part's own field.
    outcome = run_sweep(base, {"method": {"width": tune.grid_search([48])}},
                        SweepSettings(name="toys", storage_path=str(tmp_path / "results"),
                                      tracking_uri=uri, experiment="toys"))
    assert outcome.errors == [] and outcome.knobs == ["method.width"]

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("toys").experiment_id])
    children = [r for r in runs if r.data.tags.get(TAG_PARENT) == outcome.parent_run_id]
    assert [r.info.run_name for r in children] == ["width=48"]  # short labels (orchestrator.naming)
    steps_per_epoch = 24 // 8  # 6 positions x 4 levels, batches of 8, one worker
    for run in children:
        width = int(run.data.params["method.width"])
        assert run.data.params == {k: str(v) for k, v in base.override({"method.width": width}).flat().items()}
        assert not [k for k in run.data.params if "mocov2" in run.data.params[k] or k.startswith(
            ("data.pretrain", "data.aloi", "data.probe", "probes.linear", "method.queue"))]
        metrics = run.data.metrics
        assert metrics["probe/toy_steps"] == 2 * steps_per_epoch  # the per-step hook ran every step
        assert metrics["probe/toy_images"] == 24
        assert 0.0 < metrics["ris/toy_brightness/top10"] <= 100.0
        assert run.info.status == "FINISHED"
