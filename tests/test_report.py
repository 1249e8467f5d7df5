"""The sweep summary a terminal shows: links first, then what varied, the data figures once,
and last the paper's Table 1 layout per trial with the published rows, within 100 columns."""
from __future__ import annotations

from datasets.invariance_sets import INVARIANCES
from orchestrator.report import summary
from orchestrator.sweep import SweepOutcome

CROPS = [0.9, 0.08, 0.5, 0.2]  # out of order: the table sorts by the knob's value
PROBES = {"probe/linear_top1": 30.0, "probe/voc07_map": 20.0, "probe/voc07_boxes_map": 25.0}


def trial_row(crop: float) -> dict:
    row = {"method.crop_scale_min": crop, "pretrain/loss": 5.4321, "pretrain/images_per_second": 812.5}
    row |= {f"ris/{name}/top{k}": 100 * crop / 2 + k + i for i, name in enumerate(INVARIANCES) for k in (10, 25)}
    row |= {key: value + crop for key, value in PROBES.items()}
    row |= {f"data/ris_targets/{name}": 32 for name in INVARIANCES} | {"data/skipped_images": 0,
                                                                       "data/probe_images": 1600}
    return row


def outcome(**changes) -> SweepOutcome:
    fields = dict(name="crop_scale-20261206-030000-42", experiment_path="/home/u/ray_results/crop_scale-x",
                  knobs=["method.crop_scale_min"], rows=[trial_row(c) for c in CROPS], errors=[], experiment="e",
                  parent_run_id="p" * 32, tracking_uri="sqlite:////home/u/demystify-ssl/mlflow.db",
                  runs_url="http://127.0.0.1:5000/#/experiments/1/runs?" + "x" * 150,
                  compare_url="http://127.0.0.1:5000/#/compare-runs?runs=" + "y" * 200,
                  fixed={"method": "mocov2", "arch": "resnet18", "epochs": 2}, log_path="/home/u/sweep.log")
    return SweepOutcome(**(fields | changes))


def test_the_summary_fits_100_columns_and_ends_on_the_table_one_row_per_knob_value():
    lines = summary(outcome()).splitlines()
    # Only the links and the UI command may run longer: a URL cannot be wrapped.
    assert [line for line in lines if len(line) > 100 and "http" not in line and "mlflow ui" not in line] == []
    start = lines.index("RIS (%) per invariance as top-10/top-25, then the probes (%):")
    table = lines[start + 1:]
    assert max(len(line) for line in table) <= 100
    assert table[0].split() == ["top-10/top-25", "occlusion", "viewpoint", "illum", "dir", "illum", "col",
                                "instance", "inst+view", "linear", "voc07", "boxes"]
    labels = [line.split()[0] for line in table[1:5]]
    assert labels == ["crop_min=0.08", "crop_min=0.2", "crop_min=0.5", "crop_min=0.9"]
    crop_02 = table[2].split()
    assert crop_02[1:3] == ["20.0/35.0", "21.0/36.0"]  # occlusion, viewpoint: top-10/top-25
    assert crop_02[-3:] == ["30.2", "20.2", "25.2"]  # linear, voc07, boxes
    assert table[5].startswith("paper, Table 1")
    assert table[-1].startswith("PIRL ") and "84.5/78.4" in table[-1]  # the last line: a table row
    # Each invariance's column holds its own Table 1 figures (MoCo v2, ImageNet), typed here
    # from the paper: a shifted or reordered published row would put the wrong ones there.
    moco = next(line for line in table if line.startswith("MoCo v2 "))
    assert moco.split()[2:8] == ["84.2/77.9", "85.2/75.1", "90.3/80.8", "99.7/97.1", "62.5/55.0", "67.4/60.5"]
    assert not any("data/" in line or "ris_targets" in line for line in table)  # counts are not columns


def test_constant_data_figures_are_said_once_above_the_table_and_what_varies_is_named():
    text = " ".join(summary(outcome()).split(" "))
    text = " ".join(text.replace("\n", " ").split())  # wrapped at 100 columns
    assert text.count("probe_images 1600") == 1 and "skipped_images 0" in text
    assert "Data, the same in every trial:" in text
    assert "Varies: crop_min = 0.08, 0.2, 0.5, 0.9 (method.crop_scale_min)." in text
    assert "Same in every trial: method=mocov2, arch=resnet18, epochs=2" in text
    assert "Targets scored here:" in text and "comparable only at equal target counts" in text
    assert text.index("Trials:") < text.index("Varies:") < text.index("top-10/top-25")


def test_seeds_average_into_one_row_and_a_figure_that_differs_is_named():
    rows = [trial_row(c) | {"seed": s, "ris/viewpoint/top10": 40.0 + 2 * s, "data/probe_images": 1600 + s}
            for c in (0.5, 0.2) for s in (0, 1)]
    text = summary(outcome(rows=rows, knobs=["method.crop_scale_min", "seed"]))
    assert "seed = 0, 1 (each row: the mean over its seeds)" in " ".join(text.split())
    assert "Differing by trial (see each run's tags): data/probe_images." in " ".join(text.split())
    table = text.splitlines()[text.splitlines().index("RIS (%) per invariance as top-10/top-25, then the probes (%):") + 1:]
    assert [line.split()[0] for line in table[1:3]] == ["crop_min=0.2", "crop_min=0.5"]
    assert table[1].split()[2] == "41.0/36.0"  # viewpoint top-10: the mean of 40 and 42


def test_the_tables_line_says_where_the_tables_are_only_when_the_sweep_has_one():
    assert "Tables:       tables/ on the parent run" in summary(outcome())
    # A sweep whose trials log only their own probes (task_granularity's hierarchy): no table reads them.
    rows = [{"method.crop_scale_min": c, "probe/hierarchy_species_top1": 40.0, "pretrain/loss": 4.5} for c in CROPS]
    text = summary(outcome(rows=rows))
    assert "tables/ on the parent run" not in text
    assert "Tables:       none (no trial logged a metric they read); summary/ and charts/ on the parent run" in text


def test_a_failed_trial_is_one_line_saying_why_not_its_traceback():
    oom = ("/r/s/pretrain_and_evaluate_d6636_00000_0_crop_scale_min=0.0800_2026-12-06_03-26-34: "
           "ray::ImplicitFunc.train()\n"
           "  File \"/x/trial.py\", line 52, in pretrain_and_evaluate\n"
           "ray.train.WorkerGroupError: Training failed due to worker errors:\n"
           "4 worker(s) were killed due to the node running low on memory. Memory on the node was 22.35GB\n"
           "- objects spillable: 4\n")
    raised = "/r/s/trial_1: Traceback (most recent call last):\n  File \"x\"\nRuntimeError: injected failure\n"
    lines = summary(outcome(errors=[oom, raised])).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("2 trial(s) failed"))
    assert lines[start + 1].startswith("  crop_scale_min=0.0800: 4 worker(s) were killed due to the node running "
                                       "low on memory.")
    assert len(lines[start + 1]) == 100 and lines[start + 1].endswith("…")
    assert lines[start + 2] == "  trial_1: RuntimeError: injected failure"
    assert lines[start + 3] == ""  # then the table, not the rest of the tracebacks
