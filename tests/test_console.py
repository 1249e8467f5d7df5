"""The terminal of a sweep (orchestrator.console): progress and project warnings there, once
each; everything else (Ray's loggers, prints, output of C code) in the sweep's log file.
No Ray: Tune's callback events are called as Tune would."""
from __future__ import annotations

import io
import logging
import os
import sys
from types import SimpleNamespace

from orchestrator.console import Console, SweepProgress, log_path
from tests.tiny import tiny_config


def test_project_warnings_reach_the_terminal_once_and_the_rest_goes_to_the_log(tmp_path):
    terminal = io.StringIO()  # not a TTY: plain lines, as under `ray job submit`
    path = log_path(str(tmp_path / "sweep-1"), "sweep-1")
    assert path == tmp_path / "sweep-1" / "sweep.log"
    with Console(stream=terminal) as console:
        logging.getLogger("orchestrator.sweep").warning("an advisory before the log exists")
        console.start(path)
        for _ in range(2):
            logging.getLogger("orchestrator.tracking.callback").warning("trial x: data/skipped_images = 3")
        logging.getLogger("ray.tune").warning("a Ray warning")
        logging.getLogger("datasets.cache").info("built a cache folder")
        print("a Tune status table")
        sys.stdout.flush()
        os.write(2, b"raylet output\n")
    shown = terminal.getvalue().splitlines()
    assert shown == ["WARNING: an advisory before the log exists",
                     f"Log (Ray, Tune, Ray Data; --verbose shows it here): {path}",
                     "WARNING: trial x: data/skipped_images = 3"]
    log = path.read_text()
    # (Ray's loggers keep their own handler on the process's stderr: the log file in a real
    # run, pytest's capture here; what matters is that they stay off the terminal.)
    for line in ("an advisory before the log exists", "built a cache folder",
                 "a Tune status table", "raylet output"):
        assert line in log, line
    print("back on the terminal")  # the descriptors are restored: pytest captures this again
    assert "back on the terminal" not in path.read_text()


def fake_trial(trial_id: str, crop: float, data_cache) -> SimpleNamespace:
    config = tiny_config(data_cache).override({"method.crop_scale_min": crop, "epochs": 2}).to_nested()
    return SimpleNamespace(trial_id=trial_id, config=config, __str__=lambda self: trial_id)


def test_progress_says_trials_done_running_left_each_epoch_and_what_is_left(tmp_path, data_cache):
    terminal = io.StringIO()
    trials = [fake_trial("a", 0.08, data_cache), fake_trial("b", 0.5, data_cache)]
    progress = SweepProgress(len(trials), ["method.crop_scale_min"])
    with Console(stream=terminal) as console:
        console.start(tmp_path / "sweep.log")
        progress.setup()
        progress.on_trial_start(0, trials, trials[0])
        progress.on_trial_result(0, trials, trials[0], {"epoch": 0, "pretrain/loss": 5.25})
        progress.on_trial_result(0, trials, trials[0], {"epoch": 1, "pretrain/loss": 4.5})
        progress.on_trial_result(0, trials, trials[0], {"epoch": 1, "ris/viewpoint/top10": 40.0})
        progress.on_trial_complete(0, trials, trials[0])
        progress.on_trial_start(0, trials, trials[1])
        progress.on_trial_error(0, trials, trials[1])
        progress.on_experiment_end(trials)
    lines = [line.split("] ", 1)[-1] for line in terminal.getvalue().splitlines()[1:]]
    assert lines[0].startswith("started crop_min=0.08 (trials: 0 done, 1 running, 1 left; ")
    assert lines[1].startswith("crop_min=0.08: epoch 1/2, loss 5.250 (trials: 0 done, 1 running, 1 left; ")
    assert "1/6" not in lines[1] and "about" in lines[1]  # one of six steps done: an estimate follows
    assert lines[2].startswith("crop_min=0.08: epoch 2/2, loss 4.500")
    assert lines[3].startswith("finished crop_min=0.08 in 0:00, last loss 4.500 (trials: 1 done, 0 running, 1 left")
    assert lines[5].startswith("FAILED crop_min=0.5 in 0:00 (trials: 1 done, 1 failed, 0 running, 0 left")
    assert lines[6].startswith("Sweep done: trials: 1 done, 1 failed, 0 running, 0 left, in 0:0")
    assert progress.steps_done == progress.steps_total == 6  # (2 epochs + evaluation) x 2
    assert len(lines) == 7


def test_without_a_console_progress_draws_nothing(data_cache):
    trial = fake_trial("a", 0.2, data_cache)
    progress = SweepProgress(1, ["method.crop_scale_min"])
    progress.on_trial_start(0, [trial], trial)  # must not raise nor print (--verbose, tests)
    progress.on_trial_complete(0, [trial], trial)
    assert progress.done == 1


def test_a_folder_holding_only_the_log_of_a_sweep_stopped_before_tune_is_not_a_sweep(tmp_path):
    from orchestrator.sweep import _sweep_exists

    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "sweep.log").write_text("error: MLflow tracking server unreachable\n")
    assert not _sweep_exists(str(tmp_path / "stopped"))  # its name may be used again
    (tmp_path / "stopped" / "tuner.pkl").write_bytes(b"")
    assert _sweep_exists(str(tmp_path / "stopped"))
