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
from orchestrator.tracking import TAG_KNOBS, TAG_PARENT, TAG_SWEEP


def run_row(crop: float, seed: int, offset: float) -> dict:
    row = {"run": f"crop={crop},seed={seed}", "method.crop_scale_min": crop, "seed": seed}
    row |= {f"ris/viewpoint/top{k}": 50.0 + offset + k for k in (10, 25)}
    row |= {"ris/occlusion/top10": 70.0 + offset, "data/ris_targets/viewpoint": 8}
    return row


ROWS = [run_row(0.2, 0, 0.0), run_row(0.2, 1, 2.0), run_row(0.5, 0, 10.0)]
KNOBS = ["method.crop_scale_min", "seed"]


def test_runs_that_differ_only_by_seed_are_one_row_with_mean_and_spread():
    grouped = {r.model: r for r in tables.group_rows(ROWS, KNOBS)}
    assert sorted(grouped) == ["crop_min=0.2", "crop_min=0.5"]
    two = grouped["crop_min=0.2"]
    assert two.runs == 2
    assert two.mean["ris/viewpoint/top10"] == pytest.approx(61.0)
    # The 95% t-interval over the two seeds: t(0.975, 1) x sd / sqrt(2).
    half = stats.t.ppf(0.975, 1) * statistics.stdev([60.0, 62.0]) / 2 ** 0.5
    assert two.cells["ris/viewpoint/top10"].half_width == pytest.approx(half)
    assert "ris/instance/top10" not in two.mean  # not scored: shown as "-"
    assert grouped["crop_min=0.5"].cells["ris/viewpoint/top25"].half_width is None  # one run: no interval


def test_without_knobs_each_run_is_its_own_row():
    rows = tables.group_rows(ROWS, [])
    assert [r.model for r in rows] == [r["run"] for r in ROWS]


def test_markdown_has_the_paper_layout_and_the_published_rows():
    text = tables.markdown(tables.group_rows(ROWS, KNOBS), "table1")
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[0] == "| model | runs | " + " | ".join(INVARIANCES) + " |"
    project = next(line for line in lines if line.startswith("| crop_min=0.2 |"))
    cells = [c.strip() for c in project.strip("|").split("|")]
    assert cells[1] == "2"
    assert cells[2 + INVARIANCES.index("viewpoint")] == "61.00 ± 12.71 / 76.00 ± 12.71"
    assert cells[2 + INVARIANCES.index("instance")] == "- / -"
    assert "| paper: supervised R50 (ImageNet) | paper | 80.89 / 74.21 | 89.54 / 82.62 |" in text
    with_probe = [r | {"probe/linear_top1": 40.0 + r["seed"]} for r in ROWS]
    lines = tables.markdown(tables.group_rows(with_probe, KNOBS), "table1").splitlines()
    assert lines[2].endswith(" | instance_viewpoint | probe/linear_top1 |")  # the probes follow the invariances
    assert next(line for line in lines if line.startswith("| crop_min=0.2 |")).endswith(" | 40.50 ± 6.35 |")
    assert next(line for line in lines if line.startswith("| paper: PIRL")).endswith(" | - |")
    video = tables.markdown([], "table4")
    assert "| paper: Region Tracker | paper | 83.26 / 76.52 |" in video


def test_csv_has_one_line_per_row_and_scored_invariance():
    text = tables.csv_text(tables.group_rows(ROWS, KNOBS), "table1")
    lines = list(csv.DictReader(io.StringIO(text)))
    project = [r for r in lines if r["source"] == "this project"]
    assert len(project) == 2 * 2  # two rows x (viewpoint, occlusion)
    mine = next(r for r in project if r["model"] == "crop_min=0.2" and r["invariance"] == "occlusion")
    assert float(mine["top10"]) == pytest.approx(71.0) and mine["top25"] == ""
    assert len([r for r in lines if r["source"] == "paper"]) == 3 * len(INVARIANCES)


def test_build_charts_each_scored_invariance_and_refuses_runs_without_ris(tmp_path):
    report = tables.build(ROWS, KNOBS)
    assert sorted(report.charts) == ["occlusion", "viewpoint"]
    assert "Targets scored here: viewpoint 8" in report.markdown  # the comparability line
    written = report.write(tmp_path)
    assert {p.name for p in written} == {"ris_table.md", "ris_table.csv", "ris_occlusion.png", "ris_viewpoint.png"}
    assert all(p.stat().st_size > 0 for p in written)
    assert tables.build([{"run": "a", "probe/linear_top1": 50.0}], []) is None
    with pytest.raises(ValueError, match="unknown paper table"):
        tables.paper_rows("table9")


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
