"""Paper-layout tables a sweep writes beside its generic summary (one per sweep kind).

``PARENT_REPORTS[<sweep kind>]`` is a :class:`PaperTable`: ``text(rows)`` lays a sweep's
trial rows (dotted knobs and metrics, as in the summary table) out like the paper's table,
mean and spread over seeds, with the paper's published rows beside them for orientation
(never as targets). ``orchestrator.sweep`` logs it on the parent run as
``tables/<file>`` (beside the RIS tables of orchestrator.tables); the command line prints it after the summary.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

from orchestrator.rows import number, summary_rows, t_interval

# Purushwalkam & Gupta (2020), Table 2 (../shared/reference/paper_results.md): ResNet-50,
# Pascal VOC07 mAP, Pascal cropped boxes mAP, ImageNet linear top-1; the footnote's
# co-occurrence check (VOC07 test images with a table or a chair but not both) where given.
PAPER_TABLE2 = [
    ("ImageNet", "supervised", 87.5, 90.13, 76.5, None),
    ("ImageNet", "MoCo v2", 83.3, 90.03, 67.5, None),
    ("ImageNet", "PIRL", 81.1, 84.82, 63.6, None),
    ("ImageNet 10%", "MoCo v2", 62.32, 73.85, 38.53, None),
    ("MSCOCO (118K images)", "MoCo v2", 64.39, 71.94, 33.64, 73.64),
    ("MSCOCO cropped boxes (118K)", "MoCo v2", 59.6, 75.29, 34.24, 74.92),
]
TABLE2_METRICS = ("probe/voc07_map", "probe/voc07_boxes_map", "probe/linear_top1", "probe/voc07_pair_map")
TABLE2_HEADER = ("VOC07 mAP", "cropped boxes mAP", "linear top-1", "A xor B mAP (footnote)")
PRETRAIN_KNOB = "data.pretrain"


def pretraining_kind(source: str) -> str:
    """What a pretraining source holds, for Table 2's rows: scenes, their boxes, or object-centric."""
    if "scenes" in source:
        return "scene images"
    if "boxes" in source:
        return "cropped boxes of the same scenes"
    return "object-centric"


def mean_spread(values: list[float]) -> str:
    """The one mean-and-interval format (orchestrator.rows) of the finite values."""
    return t_interval([v for v in map(number, values) if v is not None]).text()


def _markdown(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]


def table2_text(rows: list[dict[str, Any]]) -> str:
    """The dataset-bias sweep's rows in Table 2's layout (markdown), the paper's rows below."""
    groups: dict[tuple[str, bool], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        # A study's epochs=0 rows (orchestrator.study) are the initial weights: a row of their own.
        groups[(str(row.get(PRETRAIN_KNOB, "?")), row.get("epochs") == 0)].append(row)
    seeds = sorted({str(row.get("seed", "")) for row in rows if row.get("seed") is not None})
    ours = [[f"{pretraining_kind(source)} (`{source}`)" + (", random init (not trained)" if untrained else ""),
             "none" if untrained else "MoCo v2",
             *(mean_spread([r.get(k) for r in members]) for k in TABLE2_METRICS)]
            for (source, untrained), members in sorted(groups.items(),
                                                       key=lambda item: (item[0][1], pretraining_kind(item[0][0])))]
    paper = [[data, method, *(f"{v:.2f}" if v is not None else "-" for v in values)]
             for data, method, *values in PAPER_TABLE2]
    header = ["pretraining data", "method", *TABLE2_HEADER]
    lines = ["## Table 2 layout: discriminative power vs pretraining data", "",
             f"This sweep (mean ± 95% t half-width over seeds {', '.join(seeds) or 'as run'}; `A xor B`: test images "
             "showing one of the co-occurring pair `probes.voc07.pair` but not the other):", "",
             *_markdown(header, ours), "",
             "Paper (ResNet-50, ImageNet / MSCOCO, for orientation; its footnote pair is table and chair):", "",
             *_markdown(header, paper), ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class PaperTable:
    file: str  # artifact path under paper/
    text: Callable[[list[dict[str, Any]]], str]


PARENT_REPORTS: dict[str, PaperTable] = {
    "dataset_bias": PaperTable("table2_dataset_bias.md", table2_text),
}


def log_paper_table(client, parent_run_id: str, children, knobs: list[str], sweep_kind: str) -> None:
    """The sweep kind's paper table (if it has one) on the parent run, from its child runs."""
    report = PARENT_REPORTS.get(sweep_kind)
    if report is None:
        return
    rows = summary_rows(children, sorted(set(knobs) | {PRETRAIN_KNOB, "seed"}))
    if rows:
        client.log_text(parent_run_id, report.text(rows), f"tables/{report.file}")
