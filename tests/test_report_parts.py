"""The tables are driven by the registered parts: a seventh invariance set and a new probe,
defined and registered here (outside the project's packages), show up as columns in every
table of their family, in Markdown, CSV, the terminal summary and a chart each."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import ClassVar

import pytest

from datasets.invariance_sets import INVARIANCE_SETS, INVARIANCES, InvarianceSetPart
from datasets.registry import ReportColumn
from orchestrator.paper_tables import TABLE1, TABLE2, TABLE3
from orchestrator.report import summary
from orchestrator.tables import build
from trainables.probes import PROBES
from trainables.probes.base import Probe


@dataclass(frozen=True)
class Blur(InvarianceSetPart):
    """A seventh invariance: the same object, sharp to blurred."""

    name: ClassVar[str] = "blur"


@dataclass(frozen=True)
class Texture(Probe):
    name: ClassVar[str] = "texture"
    columns: ClassVar[tuple[ReportColumn, ...]] = (ReportColumn(("probe/texture_top1",), "texture top-1", "texture"),)


@pytest.fixture
def new_parts():
    INVARIANCE_SETS.register(Blur)
    PROBES.register(Texture)
    yield
    INVARIANCE_SETS.unregister("blur")
    PROBES.unregister("texture")


ROWS = [{"run": f"r{s}", "method": "mocov2", "seed": s, "ris/viewpoint/top10": 60.0 + s, "ris/viewpoint/top25": 70.0,
         "ris/blur/top10": 30.0 + 2 * s, "ris/blur/top25": 40.0, "probe/linear_top1": 50.0,
         "probe/texture_top1": 20.0 + s} for s in (0, 1)]
KNOBS = ["method", "seed"]


def test_a_new_invariance_set_and_probe_are_columns_of_every_table_of_their_family(new_parts, tmp_path):
    ris = build(TABLE1, ROWS, KNOBS)
    header = next(line for line in ris.markdown.splitlines() if line.startswith("| model |"))
    # The paper's six first, in its order, then the new set; the probes after the invariances.
    assert header == "| model | runs | " + " | ".join([*INVARIANCES, "blur", "linear top-1", "texture top-1"]) + " |"
    mine = next(line for line in ris.markdown.splitlines() if line.startswith("| mocov2 |"))
    assert "| 31.00 ± 12.71 / 40.00 ± 0.00 |" in mine and mine.endswith("| 20.50 ± 6.35 |")
    assert "this project,mocov2,2,ris/blur/top10,31.0000," in ris.csv
    assert "this project,mocov2,2,probe/texture_top1,20.5000," in ris.csv
    written = {p.name for p in ris.write(tmp_path)}
    assert {"ris_blur.png", "ris_texture_top1.png"} <= written and (tmp_path / "ris_blur.png").stat().st_size > 0
    # The probe joins the Table 2 and Table 3 layouts too, after the paper's columns.
    for spec in (TABLE2, TABLE3):
        table = build(spec, ROWS, KNOBS)
        assert "| texture top-1 |" in table.markdown.splitlines()[2] + " |"
        assert "probe/texture_top1" in table.csv and "texture_top1" in table.charts
    # And the terminal summary, under the parts' short heads.
    outcome = SimpleNamespace(name="s", rows=ROWS, knobs=KNOBS, errors=[], interrupted=False,
                              experiment_path="/r", experiment="e", parent_run_id="p", tracking_uri="http://h:5000",
                              runs_url="", compare_url="", tracking_errors=0)
    heads = next(line for line in summary(outcome).splitlines() if line.startswith("top-10/top-25"))
    assert heads.split() == ["top-10/top-25", "viewpoint", "blur", "linear", "texture"]


def test_without_them_registered_their_keys_are_still_shown_under_their_keys():
    header = build(TABLE1, ROWS, KNOBS).markdown.splitlines()[2]
    assert "ris/blur/top10 | ris/blur/top25" in header and "probe/texture_top1" in header
