"""sweeps/methods.py: every image method, one search space, checked before Ray (no training)."""
from __future__ import annotations

import argparse
import importlib
import sys

from tests.conftest import REPO_ROOT


def methods_sweep():
    sys.path.insert(0, str(REPO_ROOT / "sweeps"))
    try:
        return importlib.import_module("methods")
    finally:
        sys.path.pop(0)


def test_the_methods_sweep_plans_every_image_method_and_each_trial_passes_the_checks():
    from orchestrator.config import check, preset
    from orchestrator.search import trials_of

    module = methods_sweep()
    names = module.image_methods()
    assert {"mocov2", "simclr", "byol", "supervised"} <= set(names)
    assert not {"fti", "region_tracker", "mocov2_frames", "gt_tracks"} & set(names)  # video: their own sweep
    parser = argparse.ArgumentParser()
    module.options(parser)
    args = parser.parse_args(["--seeds", "0", "1"])
    _, configs = trials_of(preset("default"), module.search_space(args))
    check(configs)
    assert sorted((c.method.name, c.seed) for c in configs) == sorted((m, s) for m in names for s in (0, 1))


def test_a_method_registered_outside_the_project_joins_the_sweep():
    from dataclasses import dataclass
    from typing import ClassVar

    from trainables.methods import METHODS
    from trainables.methods.simclr import SimCLR

    @dataclass(frozen=True)
    class UsersMethod(SimCLR):
        name: ClassVar[str] = "users_method"

    METHODS.register(UsersMethod)
    try:
        assert "users_method" in methods_sweep().image_methods()
    finally:
        METHODS.unregister("users_method")
