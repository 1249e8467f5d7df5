"""The sweep summary: the knobs first, the paper's figures beside, and when they compare."""
from __future__ import annotations

from orchestrator.report import summary
from orchestrator.sweep import SweepOutcome
from datasets.invariance_sets import INVARIANCES


def test_summary_names_the_target_counts_and_warns_that_the_papers_figures_compare_only_at_equal_counts():
    rows = [{"method.crop_scale_min": 0.5, "ris/viewpoint/top10": 40.0, "data/ris_targets/viewpoint": 32},
            {"method.crop_scale_min": 0.08, "ris/viewpoint/top10": 38.0, "data/ris_targets/viewpoint": 32}]
    outcome = SweepOutcome(name="s", experiment_path="/x/s", knobs=["method.crop_scale_min"], rows=rows,
                           errors=[], experiment="e", parent_run_id="p", tracking_uri="sqlite:////x.db")
    text = summary(outcome)
    header, rule, first, second = text.splitlines()[1:5]
    assert header.split() == ["method.crop_scale_min", "ris/viewpoint/top10"]  # counts are not a column
    assert first.split() == ["0.08", "38.00"] and second.split() == ["0.50", "40.00"]
    assert "Targets scored here: viewpoint 32." in text and "1,000 objects" in text
    assert "comparable only at equal target counts" in text
    # The paper's line pairs each invariance with its own Table 1 figures (MoCo v2, ImageNet),
    # typed here from the paper: a shifted or reordered table would name the wrong ones.
    paper_table1 = {"occlusion": "84.19/77.88", "viewpoint": "85.15/75.08", "illumination_direction": "90.28/80.76",
                    "illumination_color": "99.66/97.11", "instance": "62.49/55.01", "instance_viewpoint": "67.40/60.52"}
    assert set(paper_table1) == set(INVARIANCES)
    line = next(row for row in text.splitlines() if row.startswith("Paper, MoCo v2 on ImageNet"))
    named = dict(item.rsplit(" ", 1) for item in line.split(": ", 1)[1].split(", "))
    assert named == paper_table1
