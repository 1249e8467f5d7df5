"""The paper's tables as data (orchestrator.table_spec): their layout and their published
rows, Purushwalkam & Gupta (2020), ResNet-50 throughout (../shared/reference/paper_results.md).

Published rows are printed beside a sweep's rows for orientation, never used as targets.
A sweep names the tables it wants (``run_cli(..., tables=(TABLE4, TABLE3))``); every one
is built by ``orchestrator.tables.build``.
"""
from __future__ import annotations

from orchestrator.table_spec import Published, TableSpec

# The paper's six invariances in the order of its Tables 1 and 4.
_PAPER_INVARIANCES = ("occlusion", "viewpoint", "illumination_direction", "illumination_color",
                      "instance", "instance_viewpoint")
# The sweep's best trial: the one that tells classes apart best (the paper's discriminative
# measure), else the most viewpoint-invariant one.
BEST_BY = ("probe/linear_top1", "ris/viewpoint/top10")


def _ris(label: str, where: str, *scores: tuple[float, float]) -> Published:
    """A row of Table 1 or 4: (top10, top25) per invariance, in the paper's order."""
    values = {f"ris/{name}/{top}": value for name, pair in zip(_PAPER_INVARIANCES, scores, strict=True)
              for top, value in zip(("top10", "top25"), pair, strict=True)}
    return Published(f"paper: {label}{where}", values, short=label)


def _probes(label: str, keys: tuple[str, ...], values: tuple[float | None, ...]) -> Published:
    return Published(f"paper: {label}", {k: v for k, v in zip(keys, values, strict=True) if v is not None},
                     short=label)


RIS_TITLE = "RIS (%) per invariance as top-10/top-25, then the probes (%)"


def _ris_table(name: str, published_heading: str, published: tuple[Published, ...]) -> TableSpec:
    """Tables 1 and 4: one layout (RIS per invariance, then the probes), other published rows."""
    return TableSpec(name=name, file="ris_table", chart_prefix="ris", title=RIS_TITLE, families=("ris/", "probe/"),
                     needs=("ris/",), terminal_head="top-10/top-25", best_by=BEST_BY,
                     published_heading=published_heading, published=published)


TABLE1 = _ris_table(  # ImageNet-trained models
    "table1", "paper, Table 1 (ResNet-50, ImageNet; for orientation, not a target):", (
        _ris("supervised R50", " (ImageNet)", (80.89, 74.21), (89.54, 82.62), (94.63, 89.08), (99.88, 99.38),
             (66.11, 59.44), (70.17, 63.47)),
        _ris("MoCo v2", " (ImageNet)", (84.19, 77.88), (85.15, 75.08), (90.28, 80.76), (99.66, 97.11),
             (62.49, 55.01), (67.40, 60.52)),
        _ris("PIRL", " (ImageNet)", (84.46, 78.38), (85.80, 76.08), (87.70, 78.45), (99.68, 97.19),
             (52.97, 46.79), (57.01, 51.03)),
    ))

TABLE4 = _ris_table(  # video models, pretrained on TrackingNet
    "table4", "paper, Table 4 (ResNet-50; for orientation, not a target):", (
        _ris("baseline MoCo v2 on frames", "", (81.73, 75.35), (81.55, 71.71), (82.19, 72.45), (98.78, 93.58),
             (43.76, 40.43), (48.85, 45.76)),
        _ris("Frame Temporal Invariance", "", (79.92, 73.33), (83.87, 74.86), (84.47, 75.57), (99.18, 96.03),
             (42.98, 39.42), (47.81, 44.26)),
        _ris("ground-truth tracks", "", (81.52, 74.60), (84.82, 75.30), (88.28, 78.51), (99.92, 98.31),
             (47.51, 42.93), (53.47, 48.63)),
        _ris("Region Tracker", "", (83.26, 76.52), (84.97, 76.18), (88.30, 79.34), (99.77, 97.70),
             (48.81, 44.38), (53.31, 49.04)),
        _ris("ImageNet 10% MoCo v2", "", (84.00, 78.26), (80.42, 70.42), (81.90, 72.27), (98.29, 92.71),
             (46.23, 42.65), (48.54, 45.46)),
        _ris("ImageNet MoCo v2", "", (84.19, 77.88), (85.15, 75.08), (90.28, 80.76), (99.66, 97.11),
             (62.49, 55.01), (67.40, 60.52)),
    ))

# Table 2: VOC07 mAP, cropped boxes mAP, ImageNet linear top-1, and the footnote's
# co-occurrence check (VOC07 test images with a table or a chair but not both) where given.
_TABLE2_KEYS = ("probe/voc07_map", "probe/voc07_boxes_map", "probe/linear_top1", "probe/voc07_pair_map")
TABLE2 = TableSpec(
    name="table2", file="table2_dataset_bias", title="Table 2 layout: discriminative power vs pretraining data",
    families=("probe/",), best_by=BEST_BY,
    published_heading="paper, Table 2 (ResNet-50, ImageNet / MSCOCO; for orientation, not a target):",
    note=("`A xor B`: test images showing one of the co-occurring pair `probes.voc07.pair` but not the "
          "other (the paper's footnote pair: table and chair). A random-init row (epochs=0) is the same "
          "seed's initial weights, not trained."),
    published=(
        _probes("supervised (ImageNet)", _TABLE2_KEYS, (87.5, 90.13, 76.5, None)),
        _probes("MoCo v2 (ImageNet)", _TABLE2_KEYS, (83.3, 90.03, 67.5, None)),
        _probes("PIRL (ImageNet)", _TABLE2_KEYS, (81.1, 84.82, 63.6, None)),
        _probes("MoCo v2 (ImageNet 10%)", _TABLE2_KEYS, (62.32, 73.85, 38.53, None)),
        _probes("MoCo v2 (MSCOCO, 118K images)", _TABLE2_KEYS, (64.39, 71.94, 33.64, 73.64)),
        _probes("MoCo v2 (MSCOCO cropped boxes, 118K)", _TABLE2_KEYS, (59.6, 75.29, 34.24, 74.92)),
    ))

# Table 3: learning from video, discriminative power (the paper's linear probe is on
# ImageNet, its segmentation on ADE20K).
_TABLE3_KEYS = ("probe/voc07_map", "probe/voc07_boxes_map", "probe/linear_top1", "probe/seg_miou",
                "probe/seg_pixel_acc")
TABLE3 = TableSpec(
    name="table3", file="table3", title="Learning from video (paper Table 3 layout)",
    families=("probe/", "tracks/"), best_by=BEST_BY,
    published_heading="paper, Table 3 (ResNet-50, TrackingNet; for orientation, not a target):",
    note=("Probes in %. This project's linear probe is on its synthetic objects, not ImageNet, and its "
          "pretraining set is synthetic video, not TrackingNet: compare directions between rows, not values "
          "with the paper's. Track precision: share of kept region pairs on the annotated object (IoU >= 0.5 "
          "at both ends); chance: the same for random regions of the same frames."),
    published=(
        _probes("baseline MoCo v2 on frames", _TABLE3_KEYS, (61.8, 70.91, 30.33, 14.69, 61.78)),
        _probes("Frame Temporal Invariance", _TABLE3_KEYS, (63.89, 72.17, 29.34, 14.41, 61.85)),
        _probes("ground-truth tracks", _TABLE3_KEYS, (66.21, 76.16, 37.45, 14.69, 61.78)),
        _probes("Region Tracker", _TABLE3_KEYS, (66.47, 75.86, 36.51, 15.28, 63.29)),
    ))

PAPER_TABLES: dict[str, TableSpec] = {t.name: t for t in (TABLE1, TABLE2, TABLE3, TABLE4)}
