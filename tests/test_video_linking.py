"""Track linking as a Ray Data job: one chunk per task, whatever files its rows sit in."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets.video.regions import CHUNK_TRACKS_SCHEMA, FEATURE_SCHEMA, compute_tracks, link_chunk, read_tracks
from datasets.video.tracks import chunk_track_pairs, track_precision_recall

CHUNK_FRAMES, GAP, THRESHOLD = 7, 2, 0.05


def chunk_rows(video: str, chunk: int, seed: int, annotated: bool = True) -> list[dict]:
    """Feature rows of one chunk: 2-5 regions per frame, the object's box on every frame."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(CHUNK_FRAMES):
        n = int(rng.integers(2, 6))
        boxes = rng.integers(0, 40, (n, 2)).tolist()
        boxes = [[x, y, 20, 20] for x, y in boxes]
        boxes[0] = [10 + t, 10, 20, 20]  # one region on the object
        feats = rng.normal(size=(n, 8)).astype(np.float16)
        rows.append({"video": video, "chunk": chunk, "chunk_offset": t, "frame_index": 100 * chunk + 3 * t,
                     "num_boxes": n, "dim": 8, "features": feats.tobytes(), "boxes": boxes,
                     "truth_box": [10.0 + t, 10.0, 20.0, 20.0] if annotated else None})
    return rows


def expected(rows: list[dict], matching: str = "chain") -> tuple[list[dict], dict[str, float]]:
    """The pairs and counts of one chunk, computed directly from its ordered rows."""
    rows = sorted(rows, key=lambda r: r["chunk_offset"])
    feats = [np.frombuffer(r["features"], np.float16).astype(np.float32).reshape(r["num_boxes"], r["dim"]) for r in rows]
    boxes = [np.asarray(r["boxes"], np.float64) for r in rows]
    pairs = chunk_track_pairs(feats, GAP, THRESHOLD, matching=matching)
    out = [{"video": rows[0]["video"], "chunk": rows[0]["chunk"], "offset_a": int(a), "offset_b": int(b),
            "frame_a": rows[a]["frame_index"], "frame_b": rows[b]["frame_index"],
            "box_a": boxes[a][r].tolist(), "box_b": boxes[b][s].tolist(), "score": float(np.float32(score))}
           for a, b, r, s, score in zip(pairs.offset_a, pairs.offset_b, pairs.region_a, pairs.region_b, pairs.score)]
    return out, track_precision_recall(pairs, boxes, [r["truth_box"] for r in rows], GAP)


@pytest.mark.parametrize("matching", ["chain", "greedy"])
def test_link_chunk_equals_a_direct_computation_in_any_row_order(matching):
    rows = chunk_rows("v", 0, seed=1)
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    out = link_chunk(pa.Table.from_pylist(shuffled, schema=FEATURE_SCHEMA), CHUNK_FRAMES, GAP, THRESHOLD,
                     matching).to_pylist()
    assert len(out) == 1
    pairs, counts = expected(rows, matching)
    assert len(pairs) > 0 and out[0]["num_pairs"] == len(pairs) and out[0]["annotated"] and out[0]["problem"] is None
    for name in ("offset_a", "offset_b", "frame_a", "frame_b", "box_a", "box_b"):
        assert out[0][name] == [p[name] for p in pairs], name
    np.testing.assert_allclose(out[0]["score"], [p["score"] for p in pairs], rtol=1e-6)
    assert {k: out[0][k] for k in ("correct", "chance_pairs", "trackable", "recalled")} == pytest.approx(
        {k: counts[k] for k in ("correct", "chance_pairs", "trackable", "recalled")})


def test_a_chunk_with_a_missing_frame_is_reported_and_not_linked():
    rows = chunk_rows("v", 3, seed=2)
    del rows[4]
    out = link_chunk(pa.Table.from_pylist(rows, schema=FEATURE_SCHEMA), CHUNK_FRAMES, GAP, THRESHOLD).to_pylist()[0]
    assert out["num_pairs"] == 0 and out["offset_a"] == [] and "v chunk 3: 1 frames without features" in out["problem"]


def test_read_tracks_returns_one_row_per_pair_in_chunk_order(tmp_path):
    chunks = [link_chunk(pa.Table.from_pylist(chunk_rows(v, c, seed=10 * c + len(v)), schema=FEATURE_SCHEMA),
                         CHUNK_FRAMES, GAP, THRESHOLD) for v, c in (("b", 1), ("a", 2), ("a", 0))]
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.concat_tables(chunks), data / "part.parquet")
    tracks = read_tracks(SimpleNamespace(data=data)).to_pylist()
    want = [p for v, c in (("a", 0), ("a", 2), ("b", 1)) for p in expected(chunk_rows(v, c, seed=10 * c + len(v)))[0]]
    assert [(t["video"], t["chunk"], t["offset_a"], t["box_a"]) for t in tracks] == \
        [(p["video"], p["chunk"], p["offset_a"], p["box_a"]) for p in want]
    assert read_tracks(SimpleNamespace(data=tmp_path / "none")).num_rows == 0


@pytest.mark.slow
def test_ray_data_linking_groups_rows_split_across_files(ray_session, tmp_path):
    # Rows of one chunk in several files and out of order, as the region-feature actors
    # write them; chunk ("w", 1) lacks a frame; ("u", 0) has no annotated box.
    chunks = {("v", 0): chunk_rows("v", 0, 1), ("v", 1): chunk_rows("v", 1, 2), ("w", 0): chunk_rows("w", 0, 3),
              ("w", 1): chunk_rows("w", 1, 4)[:-1], ("u", 0): chunk_rows("u", 0, 5, annotated=False)}
    rows = [r for chunk in chunks.values() for r in chunk]
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    features = tmp_path / "features"
    (features / "data").mkdir(parents=True)
    for part in range(3):
        pq.write_table(pa.Table.from_pylist(rows[part::3], schema=FEATURE_SCHEMA), features / "data" / f"{part}.parquet")
    stage = SimpleNamespace(data=features / "data")
    out = tmp_path / "tracks"
    counters, problems = compute_tracks(stage, CHUNK_FRAMES, GAP, THRESHOLD, out)

    stored = pq.ParquetDataset(sorted(out.glob("*.parquet"))).read()
    assert stored.schema.equals(CHUNK_TRACKS_SCHEMA) and stored.num_rows == len(chunks)
    linked = [k for k in sorted(chunks) if k != ("w", 1)]
    want = [p for k in linked for p in expected(chunks[k])[0]]
    tracks = read_tracks(SimpleNamespace(data=out)).to_pylist()
    assert [(t["video"], t["chunk"], t["offset_a"], t["offset_b"], t["box_b"]) for t in tracks] == \
        [(p["video"], p["chunk"], p["offset_a"], p["offset_b"], p["box_b"]) for p in want]
    assert problems == ["w chunk 1: 1 frames without features; no tracks through it"]
    annotated = [expected(chunks[k]) for k in linked if k != ("u", 0)]
    kept = sum(len(p) for p, _ in annotated)
    assert counters["track_pairs"] == len(want) and counters["tracked_chunks"] == 4
    assert counters["annotated_chunks"] == 3
    assert counters["precision"] == pytest.approx(sum(c["correct"] for _, c in annotated) / kept)
    assert counters["recall"] == pytest.approx(sum(c["recalled"] for _, c in annotated)
                                               / sum(c["trackable"] for _, c in annotated))


def test_the_matching_keys_the_tracks_stage_alone(tmp_path, monkeypatch):
    # A matching change relinks (a new tracks key over the same features key); the same
    # setting again reuses the stored stage.
    import datasets.video.regions as regions

    linked = []

    def fake_compute(features, chunk_frames, frame_gap, threshold, data, matching):
        linked.append(matching)
        data.mkdir(parents=True)
        return {"track_pairs": 0}, []

    monkeypatch.setattr(regions, "compute_tracks", fake_compute)
    features = SimpleNamespace(key="region_features-v2-0123456789abcdef")
    chain = regions.run_tracks_stage(features, CHUNK_FRAMES, GAP, THRESHOLD, str(tmp_path))
    greedy = regions.run_tracks_stage(features, CHUNK_FRAMES, GAP, THRESHOLD, str(tmp_path), "greedy")
    again = regions.run_tracks_stage(features, CHUNK_FRAMES, GAP, THRESHOLD, str(tmp_path), "greedy")
    assert linked == ["chain", "greedy"] and again.reused and again.key == greedy.key != chain.key
    assert greedy.params["matching"] == "greedy"
    with pytest.raises(ValueError, match="matching='best'"):
        regions.run_tracks_stage(features, CHUNK_FRAMES, GAP, THRESHOLD, str(tmp_path), "best")
