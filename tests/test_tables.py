"""The paper-layout RIS tables (orchestrator.tables): rows grouped over seeds, published rows
beside them, CSV and charts, and the command over an MLflow store."""
from __future__ import annotations

import csv
import io
import statistics

import pytest
from scipy import stats
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from datasets.invariance_sets import INVARIANCES
from orchestrator import tables
from orchestrator.paper_tables import TABLE1, TABLE4
from orchestrator.rows import group_over_seeds
from orchestrator.tracking.keys import TAG_KNOBS, TAG_PARENT, TAG_SWEEP


def run_row(crop: float, seed: int, offset: float) -> dict:
    row = {"run": f"crop={crop},seed={seed}", "method.crop_scale_min": crop, "seed": seed}
    row |= {f"ris/viewpoint/top{k}": 50.0 + offset + k for k in (10, 25)}
    row |= {"ris/occlusion/top10": 70.0 + offset, "data/ris_targets/viewpoint": 8}
    return row


ROWS = [run_row(0.2, 0, 0.0), run_row(0.2, 1, 2.0), run_row(0.5, 0, 10.0)]
KNOBS = ["method.crop_scale_min", "seed"]


def built(rows, knobs=KNOBS, spec=TABLE1):
    return tables.build(spec, rows, knobs)


def project_cells(text: str, label: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_runs_that_differ_only_by_seed_are_one_row_with_mean_and_interval():
    groups = {g.label: g for g in group_over_seeds(ROWS, KNOBS)}
    assert list(groups) == ["crop_min=0.2", "crop_min=0.5"]
    two = groups["crop_min=0.2"].interval("ris/viewpoint/top10")
    assert (two.n, two.mean) == (2, pytest.approx(61.0))
    # The 95% t-interval over the two seeds: t(0.975, 1) x sd / sqrt(2).
    assert two.half_width == pytest.approx(stats.t.ppf(0.975, 1) * statistics.stdev([60.0, 62.0]) / 2 ** 0.5)
    assert groups["crop_min=0.2"].interval("ris/instance/top10").n == 0  # not scored: shown as "-"
    assert groups["crop_min=0.5"].interval("ris/viewpoint/top25").half_width is None  # one run: no interval


def test_without_knobs_each_run_is_its_own_row_and_with_only_seeds_one():
    assert [g.label for g in group_over_seeds(ROWS, [])] == [r["run"] for r in ROWS]
    assert [g.label for g in group_over_seeds(ROWS, ["seed"])] == ["all runs"]


def test_markdown_has_the_paper_layout_and_the_published_rows():
    text = built(ROWS).markdown
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[0] == "| model | runs | " + " | ".join(INVARIANCES) + " |"
    cells = project_cells(text, "crop_min=0.2")
    assert cells[1] == "2"
    assert cells[2 + INVARIANCES.index("viewpoint")] == "61.00 ± 12.71 / 76.00 ± 12.71"
    assert cells[2 + INVARIANCES.index("instance")] == "- / -"
    assert "| paper: supervised R50 (ImageNet) | paper | 80.89 / 74.21 | 89.54 / 82.62 |" in text
    with_probe = [r | {"probe/linear_top1": 40.0 + r["seed"]} for r in ROWS]
    text = built(with_probe).markdown
    lines = text.splitlines()
    assert lines[2].endswith(" | instance_viewpoint | linear top-1 |")  # the probes follow the invariances
    assert project_cells(text, "crop_min=0.2")[-1] == "40.50 ± 6.35"
    assert project_cells(text, "paper: PIRL (ImageNet)")[-1] == "-"
    # A metric fewer runs have than the row says how many.
    text = built([ROWS[0] | {"probe/linear_top1": 40.0}, ROWS[1], ROWS[2]]).markdown
    assert project_cells(text, "crop_min=0.2")[-1] == "40.00 (n=1)"
    video = built([ROWS[2]], spec=TABLE4).markdown
    assert "| paper: Region Tracker | paper | 83.26 / 76.52 |" in video


def test_csv_has_one_line_per_row_and_metric():
    lines = list(csv.DictReader(io.StringIO(built(ROWS).csv)))
    project = [r for r in lines if r["source"] == "this project"]
    assert len(project) == 3 + 3  # each row: occlusion top10, viewpoint top10 and top25
    mine = next(r for r in project if r["model"] == "crop_min=0.2" and r["metric"] == "ris/occlusion/top10")
    assert float(mine["mean"]) == pytest.approx(71.0) and float(mine["std"]) == pytest.approx(2 ** 0.5, abs=1e-4)
    assert float(mine["ci95_half_width"]) == pytest.approx(stats.t.ppf(0.975, 1), abs=1e-4) and mine["n"] == "2"
    assert len([r for r in lines if r["source"] == "paper"]) == 3 * 2 * len(INVARIANCES)


def test_build_charts_each_measured_column_and_refuses_runs_without_ris(tmp_path):
    report = built(ROWS)
    assert sorted(report.charts) == ["occlusion", "viewpoint"]
    assert "Targets scored here: viewpoint 8" in report.markdown  # the comparability line
    written = report.write(tmp_path)
    assert {p.name for p in written} == {"ris_table.md", "ris_table.csv", "ris_occlusion.png", "ris_viewpoint.png"}
    assert all(p.stat().st_size > 0 for p in written)
    assert built([{"run": "a", "probe/linear_top1": 50.0}], []) is None


def test_the_command_reads_a_sweep_from_mlflow_and_logs_on_its_parent(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment, run_name="sweep", tags={TAG_SWEEP: "s1", TAG_KNOBS: ",".join(KNOBS)})
    for row in ROWS:
        child = client.create_run(experiment, run_name=row["run"],
                                  tags={TAG_SWEEP: "s1", TAG_PARENT: parent.info.run_id})
        client.log_batch(child.info.run_id,
                         metrics=[Metric(k, float(v), 0, 1) for k, v in row.items() if "/" in k],
                         params=[Param(k, str(row[k])) for k in KNOBS], tags=[RunTag("x", "y")])
    assert tables.main(["s1", "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "| crop_min=0.5 | 1 |" in printed
    assert (tmp_path / "out" / "ris_table.csv").exists()
    logged = {f.path for f in client.list_artifacts(parent.info.run_id, "tables")}
    assert {"tables/ris_table.md", "tables/ris_table.csv", "tables/ris_viewpoint.png"} <= logged
    # Any runs, by id: one row each.
    ids = [r.info.run_id for r in client.search_runs([experiment]) if TAG_PARENT in r.data.tags]
    assert tables.main(["--runs", *ids, "--tracking-uri", uri, "--paper", "table4"]) == 0
    assert "paper: Region Tracker" in capsys.readouterr().out
    assert tables.main(["nope", "--tracking-uri", uri]) == 2
    assert "no sweep named 'nope'" in capsys.readouterr().err
