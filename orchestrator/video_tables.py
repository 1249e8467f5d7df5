"""The paper's Table 3 layout (learning from video: discriminative power) for a video sweep.

A row per model (one combination of the sweep's knobs, seeds averaged: mean ± sample
standard deviation), the probes this project runs in the paper's columns, the track
figures the video methods log, then the paper's rows (TrackingNet, ResNet-50) for
orientation. Columns the project does not compute are "-". Table 4 (RIS) is
``orchestrator.tables`` with ``paper_table="table4"``; a video sweep logs both on its
parent run under ``tables/``.
"""
from __future__ import annotations

import csv
import io
from typing import Any

from orchestrator.rows import group_over_seeds

# (column title, metric key or None when the project has no such probe yet)
TABLE3_COLUMNS = (
    ("Pascal VOC07 mAP", "probe/voc07_map"),
    ("Pascal cropped boxes mAP", "probe/voc07_boxes_map"),
    ("linear top-1 (paper: ImageNet)", "probe/linear_top1"),
    ("ADE20K mIoU", "probe/seg_miou"),
    ("ADE20K pixel acc.", "probe/seg_pixel_acc"),
)
TRACK_COLUMNS = (("track pairs", "tracks/pairs"), ("track precision", "tracks/precision"),
                 ("chance precision", "tracks/chance_precision"), ("track recall", "tracks/recall"))
PAPER_TABLE3 = {  # Purushwalkam & Gupta (2020), Table 3, in TABLE3_COLUMNS' order
    "paper: baseline MoCo v2 on frames": (61.8, 70.91, 30.33, 14.69, 61.78),
    "paper: Frame Temporal Invariance": (63.89, 72.17, 29.34, 14.41, 61.85),
    "paper: ground-truth tracks": (66.21, 76.16, 37.45, 14.69, 61.78),
    "paper: Region Tracker": (66.47, 75.86, 36.51, 15.28, 63.29),
}


def table3(rows: list[dict[str, Any]], knobs: list[str]) -> tuple[str, str] | None:
    """``(markdown, csv)`` of the Table 3 layout; None when no run has a probe or track metric."""
    keys = [k for _, k in TABLE3_COLUMNS + TRACK_COLUMNS]
    if not any(isinstance(r.get(k), (int, float)) for r in rows for k in keys):
        return None
    header = ["model", "runs", *[t for t, _ in TABLE3_COLUMNS], *[t for t, _ in TRACK_COLUMNS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["source", "model", "runs", "metric", "mean", "ci95_half_width"])
    for group in group_over_seeds(rows, knobs):
        name, members = group.label, group.rows
        cells = []
        for _, key in TABLE3_COLUMNS + TRACK_COLUMNS:
            shown = group.interval(key)  # probes are logged in percent, as the paper prints them
            digits = 0 if key == "tracks/pairs" else (2 if key.startswith("probe/") else 3)
            cells.append(shown.text(digits, len(members)))
            if shown.n:
                writer.writerow(["this project", name, len(members), key, f"{shown.mean:.4f}",
                                 f"{shown.half_width:.4f}" if shown.half_width is not None else ""])
        lines.append("| " + " | ".join([name, str(len(members)), *cells]) + " |")
    for name, values in PAPER_TABLE3.items():
        lines.append("| " + " | ".join([name, "paper", *[f"{v:.2f}" for v in values], *["-"] * len(TRACK_COLUMNS)]) + " |")
        for (_, key), value in zip(TABLE3_COLUMNS, values):
            writer.writerow(["paper", name, "", key, f"{value:.4f}", ""])
    note = ("Probes in %, mean ± std over seeds. This project's linear probe is on its synthetic objects, not "
            "ImageNet, and its pretraining set is synthetic video, not TrackingNet: compare directions between "
            "rows, not values with the paper's. Track precision: share of kept region pairs on the annotated "
            "object (IoU >= 0.5 at both ends); chance: the same for random regions of the same frames.")
    title = "## Learning from video (paper Table 3 layout)"
    return "\n".join([title, "", *lines, "", note]) + "\n", buffer.getvalue()


def log_table3(client, run_id: str, rows: list[dict[str, Any]], knobs: list[str], prefix: str = "tables") -> bool:
    """Log ``tables/table3.md`` and ``tables/table3.csv`` on ``run_id``; False when there is nothing to show."""
    built = table3(rows, knobs)
    if built is None:
        return False
    client.log_text(run_id, built[0], f"{prefix}/table3.md")
    client.log_text(run_id, built[1], f"{prefix}/table3.csv")
    return True
