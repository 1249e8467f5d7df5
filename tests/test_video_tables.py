"""Table 3 layout of a video sweep: seeds averaged per method, the paper's rows beside."""
from orchestrator.paper_tables import TABLE3
from orchestrator.tables import build


def test_table3_averages_seeds_and_shows_the_papers_rows():
    rows = [{"method": "fti", "seed": 0, "probe/linear_top1": 50.0, "run": "a", "method.frame_gap": 5},
            {"method": "fti", "seed": 1, "probe/linear_top1": 60.0, "run": "b", "method.frame_gap": 5},
            {"method": "region_tracker", "seed": 0, "probe/linear_top1": 55.0, "tracks/pairs": 120.0,
             "tracks/precision": 0.25, "tracks/chance_precision": 0.02, "tracks/recall": float("nan"), "run": "c",
             "method.frame_gap": 5, "method.track_threshold": 0.25},
            {"method": "mocov2_frames", "seed": 0, "probe/linear_top1": 40.0, "run": "d"}]
    # frame_gap and track_threshold differ only by being absent for some methods: rows are named by method.
    table = build(TABLE3, rows, ["method", "method.frame_gap", "method.track_threshold", "seed"])
    lines = table.markdown.splitlines()
    assert lines[2].startswith("| model | runs | VOC07 mAP | cropped boxes mAP | linear top-1 | seg mIoU |")
    fti = next(line for line in lines if line.startswith("| fti |"))
    assert "| 2 |" in fti and "55.00 ± 63.53" in fti  # mean and 95% t-interval over the two seeds, in %
    tracker = next(line for line in lines if line.startswith("| region_tracker |"))
    assert "| 120 |" in tracker and "0.250" in tracker and tracker.rstrip(" |").endswith("-")  # NaN recall: no value
    assert any(line.startswith("| paper: Region Tracker | paper | 66.47") for line in lines)
    assert any(line.startswith("| mocov2_frames | 1 |") for line in lines)
    assert "this project,fti,2,probe/linear_top1,55.0000,63.5310,7.0711,2" in table.csv
    assert sorted(table.charts) == ["chance_precision", "linear_top1", "pairs", "precision"]
    assert build(TABLE3, [{"method": "fti", "run": "x"}], ["method"]) is None
