"""What a new user met (issue 23, items 6 and 10), each refused or fixed before any Ray work:
`--set` in any order, a data role no part reads named with the parts that would, a
training set smaller than one global batch, a one-value grid's run name, and a sweep name
taken on object storage."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image
from ray import tune

import datasets.ray_connection
import orchestrator.sweep
from orchestrator.config import ConfigError, SweepSettings, TrialConfig, parse_overrides, preset
from orchestrator.naming import trial_label
from orchestrator.search import grid_keys, sweep_selections, trials_of
from tests.conftest import REPO_ROOT


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if anything tries to start Ray or prepare data."""
    def forbidden(*args, **kwargs):
        raise AssertionError("Ray work started for an invalid configuration")

    monkeypatch.setattr(datasets.ray_connection, "init_ray", forbidden)
    monkeypatch.setattr(orchestrator.sweep, "prepare_data", forbidden)


def sweep_script(name: str):
    sys.path.insert(0, str(REPO_ROOT / "sweeps"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def run_script(name: str, argv: list[str]) -> int:
    from orchestrator.cli import run_cli

    script = sweep_script(name)
    return run_cli(name, script.__doc__, script.options, script.search_space, argv)


def script_args(module, argv: list[str]):
    """A sweep script's parsed options, as its command line would parse `argv`."""
    from orchestrator.cli import common_parser

    parser = common_parser("")
    module.options(parser.add_argument_group())
    return parser.parse_args(argv)


def image_folder(root, images: int):
    """An ImageNet-style root of `images` real 8x8 JPEGs in two classes."""
    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / "train" / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return root


# -- --set in any order -----------------------------------------------------------------------
def test_overrides_apply_selections_then_sources_then_settings_in_any_order(tmp_path):
    wanted = {"method": "fti", "data.video": "video", "data.video.root": str(tmp_path), "method.frame_gap": 3,
              "probes": "voc07", "probes.voc07.protocol": "fast", "epochs": 3}
    in_order = TrialConfig().override(wanted)
    reversed_order = TrialConfig().override(dict(reversed(list(wanted.items()))))
    assert reversed_order == in_order
    assert (in_order.method.name, in_order.method.frame_gap, in_order.data["video"].root) == ("fti", 3, str(tmp_path))
    # A setting given before its source still lands on that source, not the default's.
    assert TrialConfig().override(parse_overrides(["data.pretrain.root=/data/imagenet", "data.pretrain=image-folder"])
                                  ).data["pretrain"].root == "/data/imagenet"


def test_a_role_no_part_reads_names_the_selections_that_would():
    with pytest.raises(ConfigError) as err:
        TrialConfig().override({"data.video": "video"})
    text = str(err.value)
    assert "no part of this trial reads data.video" in text
    assert "method=fti" in text and "method=region_tracker" in text and "add --set method=" in text
    # A probe's role: the hint keeps the probes already selected.
    with pytest.raises(ConfigError, match=r"read by probes=seg .* add --set probes=linear,seg"):
        TrialConfig().override({"data.ade20k.root": "/data/ade"})


def test_the_sweeps_own_method_is_selected_before_the_users_settings():
    frame_gap = sweep_script("frame_gap")
    args = script_args(frame_gap, [])
    assert sweep_selections(preset("default"), frame_gap.search_space(args)) == {"method": "fti"}
    crop_scale = sweep_script("crop_scale")
    args = script_args(crop_scale, [])
    assert sweep_selections(preset("default"), crop_scale.search_space(args)) == {}  # MoCo v2, as the preset


def test_readmes_frame_gap_example_reaches_the_data_check(no_ray, tmp_path, capsys):
    """`frame_gap.py --set data.video=video --set data.video.root=DIR`, as README shows it:
    no `--set method=fti` needed; an empty DIR is refused by the video source's own check."""
    assert run_script("frame_gap", ["--set", "data.video=video", "--set", f"data.video.root={tmp_path}",
                                    "--storage-path", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "no part of this trial reads" not in err and "data.video" in err and str(tmp_path) in err


def test_settings_of_the_sweeps_method_reach_its_trials(monkeypatch, tmp_path):
    seen = {}

    def capture(base, space, settings):
        seen["trials"] = trials_of(base, space)[1]
        raise ConfigError("captured")

    monkeypatch.setattr(orchestrator.sweep, "run_sweep", capture)
    assert run_script("frame_gap", ["--gaps", "2", "5", "--set", "method.crop_scale_min=0.5",
                                    "--set", "data.video=video", "--set", f"data.video.root={tmp_path}"]) == 2
    trials = seen["trials"]
    assert [t.method.frame_gap for t in trials] == [2, 5]
    assert all(t.method.crop_scale_min == 0.5 and t.data["video"].root == str(tmp_path) for t in trials)


# -- a training set smaller than one global batch ----------------------------------------------
def small_set_trial(root, batch_size=64) -> TrialConfig:
    return TrialConfig().override({"data.pretrain": "image-folder", "data.pretrain.root": str(root),
                                   "invariances": "", "probes": "", "batch_size": batch_size})


def test_a_training_set_smaller_than_one_global_batch_is_refused_by_the_driver(tmp_path):
    root = image_folder(tmp_path / "twenty", 20)
    trial = small_set_trial(root)
    with pytest.raises(ConfigError) as err:
        orchestrator.sweep.prepare_data([trial])
    assert str(err.value) == (f"data.pretrain at {root}: 20 training items for method=mocov2, fewer than one "
                              "global batch of 64 (batch_size); lower --set batch_size or add data")
    assert orchestrator.sweep.prepare_data([small_set_trial(root, batch_size=16)]) == {
        "data.pretrain": str(root.resolve())}


def test_the_train_worker_refuses_it_with_the_same_check(tmp_path):
    from trainables.pretrain import pretrain_loader

    root = image_folder(tmp_path / "twenty", 20)
    with pytest.raises(ConfigError, match="20 training items for method=mocov2, fewer than one global batch of 64"):
        pretrain_loader(small_set_trial(root), world_size=2, rank=1, loader_workers=0)
    # 20 items fill a global batch of 20 over 2 ranks: one batch of 10 each.
    assert len(pretrain_loader(small_set_trial(root, batch_size=20), world_size=2, rank=1, loader_workers=0)) == 1


# -- a one-value grid ------------------------------------------------------------------------------
def test_a_one_value_grid_names_its_run_by_the_grid():
    space = sweep_script("crop_scale").search_space(script_args(sweep_script("crop_scale"),
                                                                    ["--crop-scale-mins", "0.5"]))
    _, (trial,) = trials_of(TrialConfig(), space)
    keys = grid_keys(space, trial)
    assert keys == ["method.crop_scale_min"]
    assert trial_label(trial.flat(), keys, "pretrain_and_evaluate_1a2b3_00000") == "crop_min=0.5"
    frame_gap = sweep_script("frame_gap")
    space = frame_gap.search_space(script_args(frame_gap, ["--gaps", "5"]))
    _, (trial,) = trials_of(TrialConfig(), space)
    assert trial_label(trial.flat(), grid_keys(space, trial)) == "fti k=5"
    # A selection grid and a source grid name the selection.
    space = {"invariances": tune.grid_search([{"viewpoint": {}}]),
             "data": {"pretrain": tune.grid_search([{"source": "image-folder", "root": "/x"}])}}
    _, (trial,) = trials_of(TrialConfig(), space)
    assert grid_keys(space, trial) == ["invariances", "data.pretrain", "data.pretrain.root"]
    assert grid_keys({"seed": 3}, trial) == []  # no grid: Ray's name stays


# -- a sweep name on object storage -----------------------------------------------------------------
def test_a_sweep_on_a_uri_exists_when_tune_can_restore_it(tmp_path):
    from orchestrator.sweep import _sweep_exists

    uri = f"file://{tmp_path}/taken"
    assert not _sweep_exists(uri)
    (tmp_path / "taken").mkdir()
    assert not _sweep_exists(uri)  # a prefix without Tune's state is no sweep
    (tmp_path / "taken" / "tuner.pkl").write_bytes(b"")
    assert _sweep_exists(uri)
    with pytest.raises(ConfigError, match="cannot read the storage path nosuch://bucket/x"):
        _sweep_exists("nosuch://bucket/x")


def test_name_and_resume_on_a_uri_are_checked_like_a_local_folder(no_ray, tmp_path, monkeypatch):
    from orchestrator.sweep import run_sweep

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "tuner.pkl").write_bytes(b"")
    storage = f"file://{tmp_path}"
    with pytest.raises(ConfigError, match="a sweep named 'taken' already exists .* pass --resume"):
        run_sweep(TrialConfig(), {}, SweepSettings(name="taken", storage_path=storage))
    with pytest.raises(ConfigError, match=f"--resume: no sweep to resume at {storage}/missing"):
        run_sweep(TrialConfig(), {}, SweepSettings(name="missing", storage_path=storage, resume=True))
