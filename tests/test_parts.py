"""Parts plug in from outside the project: a toy method, invariance set, probe and data
source, registered here, run through a tiny sweep end to end (Tune -> Train -> evaluation
-> MLflow) without any project file knowing them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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
from datasets.registry import PARTS_ENTRY_POINT_GROUP, Part, Registry
from datasets.sources import DATA_SOURCES, DataRole, DataSource
from orchestrator.config import SweepSettings, TrialConfig
from orchestrator.sweep import run_sweep
from orchestrator.tracking.keys import TAG_PARENT
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


def test_a_new_module_in_a_parts_package_is_found_without_editing_its_init(tmp_path, monkeypatch):
    package = tmp_path / "user_things"
    package.mkdir()
    # The package's __init__ names no module; the registry reads its package on first use.
    (package / "__init__.py").write_text(textwrap.dedent("""
        from datasets.registry import Part, Registry
        THINGS = Registry("thing", Part, package=__name__)
        IMPORTED = []
    """))
    for module, thing in (("zeta", "last"), ("alpha", "first"), ("helpers", None)):
        register = f"""
            @THINGS.register
            @dataclass(frozen=True)
            class Thing(Part):
                name: ClassVar[str] = "{thing}"
        """ if thing else ""
        (package / f"{module}.py").write_text(textwrap.dedent(f"""
            from dataclasses import dataclass
            from typing import ClassVar
            from datasets.registry import Part
            from user_things import IMPORTED, THINGS
            IMPORTED.append(__name__)
            {register}
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_things

    assert user_things.IMPORTED == []
    assert user_things.THINGS.names() == ("first", "last")
    # Once, in name order: registration (and a clash of names) is the same on every run.
    assert user_things.IMPORTED == ["user_things.alpha", "user_things.helpers", "user_things.zeta"]
    assert "first" in user_things.THINGS and user_things.IMPORTED == ["user_things.alpha", "user_things.helpers",
                                                                       "user_things.zeta"]
    for module in ("user_things", "user_things.alpha", "user_things.helpers", "user_things.zeta"):
        monkeypatch.delitem(sys.modules, module)


# Run in a fresh interpreter (what a user's process or a Ray worker sees): which modules the
# first read of each registry imported, and a trial of a user's method declared only by
# the entry point of an installed distribution.
DISCOVERY_SCRIPT = """
import ast, inspect, json, pkgutil, sys
from pathlib import Path
from datasets.invariance_sets import INVARIANCE_SETS
from datasets.sources import DATA_SOURCES
from trainables.methods import METHODS
from trainables.probes import PROBES

out = {"listed": {}, "unregistered": []}
for registry in (METHODS, INVARIANCE_SETS, PROBES, DATA_SOURCES):
    package = sys.modules[registry.package]
    tree = ast.parse(Path(package.__file__).read_text())
    out["listed"][registry.package] = sorted(
        {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} - {registry.package + ".base"})
    modules = [f"{registry.package}.{info.name}" for info in pkgutil.iter_modules(package.__path__)]
    registry.names()
    for module in modules:
        for cls in vars(sys.modules[module]).values():
            if (inspect.isclass(cls) and issubclass(cls, registry.base) and cls.__module__ == module
                    and vars(cls).get("name") and (vars(cls)["name"] not in registry
                                                   or registry.get(vars(cls)["name"]) is not cls)):
                out["unregistered"].append(f"{module}.{cls.__name__}")
    out[registry.package] = sorted({registry.get(n).__module__ for n in registry.names()})

from trainables.config import TrialConfig
trial = TrialConfig().override({"method": "user-mocov2"})
out["trial"] = {"problems": trial.problems(), "modules": sorted(trial.part_modules()),
                "bad": trial.override({"method.projection_scale": 0}).problems()}
print(json.dumps(out))
"""

USER_METHOD = """
from dataclasses import dataclass
from typing import ClassVar

from trainables.methods import METHODS
from trainables.methods.mocov2 import MoCoV2


@METHODS.register
@dataclass(frozen=True)
class UserMoCoV2(MoCoV2):
    name: ClassVar[str] = "user-mocov2"
    projection_scale: float = 1.0

    def problems(self, trial):
        own = [] if self.projection_scale > 0 else [f"projection_scale={self.projection_scale} must be positive"]
        return super().problems(trial) + own
"""


@pytest.fixture(scope="module")
def fresh_discovery(tmp_path_factory) -> dict[str, Any]:
    """DISCOVERY_SCRIPT's findings, with a user's distribution installed outside the project:
    its module and its ``*.dist-info`` declaring the module under the parts entry point group."""
    site = tmp_path_factory.mktemp("user-site")
    (site / "user_methods.py").write_text(USER_METHOD)
    dist_info = site / "user_methods-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: user-methods\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[{PARTS_ENTRY_POINT_GROUP}]\nuser = user_methods\n")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(site)])}
    done = subprocess.run([sys.executable, "-c", DISCOVERY_SCRIPT], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_module_of_the_parts_packages_is_registered_without_being_listed(fresh_discovery):
    # No package's __init__ imports its modules (but base, for the registry)...
    assert fresh_discovery["listed"] == {p: [] for p in fresh_discovery["listed"]}
    # ...which registered every part class of every module.
    assert fresh_discovery["unregistered"] == []
    assert {f"trainables.methods.{name}" for name in ("mocov2", "simclr", "byol", "pirl", "supcon", "fti")} | {
        "user_methods"} <= set(fresh_discovery["trainables.methods"])
    assert "trainables.probes.seg" in fresh_discovery["trainables.probes"]
    assert "datasets.sources.scenes" in fresh_discovery["datasets.sources"]
    assert "datasets.invariance_sets.got10k" in fresh_discovery["datasets.invariance_sets"]


def test_a_method_from_an_installed_entry_point_passes_the_config_checks(fresh_discovery):
    trial = fresh_discovery["trial"]
    assert trial["problems"] == []
    assert "user_methods" in trial["modules"]  # what a Ray worker imports before it types the trial
    assert trial["bad"] == ["method.projection_scale=0.0 must be positive"]


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
