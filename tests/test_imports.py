"""The project's `datasets/` shares its name with Hugging Face's `datasets`, which is
installed in this environment on purpose: every way the project runs imports its own."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import datasets
from tests.conftest import REPO_ROOT

OURS = REPO_ROOT / "datasets"


def test_hugging_face_datasets_is_installed_and_would_shadow_ours():
    assert importlib.metadata.version("datasets")  # the clash is real in this environment
    # A bare interpreter outside the repository resolves the name to site-packages.
    found = subprocess.run(
        [sys.executable, "-I", "-c", "import datasets, os; print(os.path.dirname(datasets.__file__))"],
        cwd="/", capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()
    assert Path(found) != OURS and "site-packages" in found


def test_tests_import_the_projects_datasets():
    from datasets import aloi  # Hugging Face's package has no such module

    assert Path(datasets.__file__).parent == OURS
    assert Path(aloi.__file__).parent == OURS


def test_sweep_script_imports_the_projects_datasets(tmp_path):
    # Config validation imports datasets.aloi; with the wrong package this would crash
    # with ModuleNotFoundError instead of naming the missing folder.
    missing = tmp_path / "no-aloi"
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "sweeps" / "crop_scale.py"), "--set", "data.aloi=aloi",
         "--set", f"data.aloi.root={missing}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 2, run.stderr
    assert "data.aloi: " in run.stderr and str(missing) in run.stderr


@pytest.mark.slow
def test_ray_workers_import_the_projects_datasets(ray_session):
    @ray_session.remote
    def where():
        import datasets

        return datasets.__file__

    assert Path(ray_session.get(where.remote())).parent == OURS
