"""The sweep command line: bad input fails with a clear message and no Ray work."""
from __future__ import annotations

import subprocess
import sys

import pytest

import datasets.ray_connection
import orchestrator.sweep
from tests.conftest import REPO_ROOT

SCRIPT = str(REPO_ROOT / "sweeps" / "crop_scale.py")


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if anything tries to start Ray or generate data."""
    def forbidden(*args, **kwargs):
        raise AssertionError("Ray work started for an invalid configuration")

    monkeypatch.setattr(datasets.ray_connection, "init_ray", forbidden)
    monkeypatch.setattr(orchestrator.sweep, "prepare_data", forbidden)


def run(argv):
    sys.path.insert(0, str(REPO_ROOT / "sweeps"))
    try:
        import crop_scale
    finally:
        sys.path.pop(0)
    from orchestrator.cli import run_cli

    return run_cli("crop_scale", crop_scale.__doc__, crop_scale.options, crop_scale.search_space, argv)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--crop-scale-mins", "0.5", "--crop-scale-max", "0.4"], "method.crop_scale_min=0.5 is larger than crop_scale_max=0.4"),
        (["--crop-scale-mins", "0.2", "1.2"], "method.crop_scale_min=1.2 is outside (0, 1]"),
        (["--crop-scale-mins", "0.2", "--crop-scale-max", "1.5"], "method.crop_scale_max=1.5 is outside (0, 1]"),
        (["--crop-scales", "0.2:1.0", "0.5:0.3"], "trial 1: method.crop_scale_min=0.5 is larger than crop_scale_max=0.3"),
        (["--set", "data.aloi=aloi", "--set", "data.aloi.root=/no/such/aloi"], "data.aloi: /no/such/aloi"),
        (["--set", "data.pretrain=image-folder", "--set", "data.pretrain.root=/no/such/images"], "/no/such/images"),
        (["--set", "epochz=3"], "unknown trial config key 'epochz'"),
        (["--set", "method.queue_size=100"], "method.queue_size=100 must be a multiple of the global batch_size=64"),
        (["--set", "method=supcon", "--set", "method.variant=both"], "method.variant='both' is not a SupCon loss"),
        (["--set", "method=pirl", "--set", "method.loss_weight=2"], "method.loss_weight=2.0 must be in [0, 1]"),
    ],
)
def test_bad_input_is_rejected_before_ray(no_ray, capsys, argv, message):
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err


@pytest.mark.parametrize("selection", [["method=supcon"], ["method=supcon", "method.variant=in"], ["method=pirl"]])
def test_the_contrastive_methods_pass_the_checks_and_reach_ray(no_ray, tmp_path, selection):
    argv = [arg for key in selection for arg in ("--set", key)] + ["--storage-path", str(tmp_path)]
    with pytest.raises(AssertionError, match="Ray work started"):  # the checks let it through
        run(argv)


def test_existing_sweep_name_needs_resume(no_ray, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert run(["--name", "taken", "--storage-path", str(tmp_path)]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_help_names_the_search_space_and_defaults():
    out = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    out = " ".join(out.split())  # argparse wraps lines at the terminal width
    assert "--crop-scale-mins" in out and "[0.08, 0.2, 0.5, 0.9]" in out
    assert "ray job submit" in out
