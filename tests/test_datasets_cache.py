"""The generated-data cache: where it lives, its keys, build-once under concurrency."""
from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

import datasets
from datasets.cache import COMPLETE_MARKER, build_once, cache_key, cache_root, file_stamp

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_project_datasets_package_shadows_hugging_face():
    assert Path(datasets.__file__).resolve().parent == REPO_ROOT / "datasets"


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path / "from-env"))
    assert cache_root(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert cache_root() == tmp_path / "from-env"
    monkeypatch.delenv("DSSL_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "demystify-ssl"


def test_cache_key_changes_with_every_parameter_and_the_version():
    base = cache_key("synthetic-aloi", 1, objects=200, size=64, seed=0)
    assert base == "synthetic-aloi-v1-objects200-seed0-size64"
    assert cache_key("synthetic-aloi", 1, size=64, seed=0, objects=200) == base  # order-free
    variants = {
        cache_key("synthetic-aloi", 2, objects=200, size=64, seed=0),
        cache_key("synthetic-aloi", 1, objects=201, size=64, seed=0),
        cache_key("synthetic-aloi", 1, objects=200, size=32, seed=0),
        cache_key("synthetic-aloi", 1, objects=200, size=64, seed=1),
        cache_key("synthetic-objects", 1, objects=200, size=64, seed=0),
    }
    assert base not in variants and len(variants) == 5
    with pytest.raises(ValueError, match="unsafe"):
        cache_key("bad/name", 1)


def test_build_once_builds_once_and_marks_complete(tmp_path):
    calls = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "data.txt").write_text("payload")

    target = tmp_path / "set"
    assert build_once(target, build) == target
    assert build_once(target, build) == target
    assert len(calls) == 1 and calls[0] != target  # built elsewhere, then renamed
    assert (target / "data.txt").read_text() == "payload"
    assert (target / COMPLETE_MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left


def test_failed_build_leaves_nothing_and_can_be_retried(tmp_path):
    target = tmp_path / "set"

    def failing(folder: Path) -> None:
        (folder / "partial.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_once(target, failing)
    assert not target.exists()
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []
    build_once(target, lambda folder: (folder / "ok.txt").write_text("ok"))
    assert (target / "ok.txt").is_file() and not (target / "partial.txt").exists()


def test_incomplete_target_and_orphaned_temp_folders_are_replaced(tmp_path):
    target = tmp_path / "set"
    target.mkdir()
    (target / "stale.txt").write_text("from an interrupted foreign copy")
    orphan = tmp_path / ".set.tmp-killed"  # a builder killed with SIGKILL leaves this
    orphan.mkdir()
    build_once(target, lambda folder: (folder / "fresh.txt").write_text("new"))
    assert (target / "fresh.txt").is_file() and not (target / "stale.txt").exists()
    assert not orphan.exists()


def _slow_build_worker(target: str, log: str) -> None:
    def build(folder: Path) -> None:
        with open(log, "a") as handle:
            handle.write("built\n")
        time.sleep(0.5)  # long enough that the other process arrives mid-build
        (folder / "data.txt").write_text("payload")

    build_once(Path(target), build)


def test_concurrent_processes_build_once(tmp_path):
    target, log = tmp_path / "set", tmp_path / "log.txt"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_slow_build_worker, args=(str(target), str(log))) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert log.read_text() == "built\n"
    assert (target / "data.txt").read_text() == "payload"


def test_file_stamp_changes_when_a_file_is_rewritten_or_touched_and_not_otherwise(tmp_path):

    path = tmp_path / "image.png"
    assert file_stamp(path) == "missing"
    path.write_bytes(b"abc")
    first = file_stamp(path)
    assert file_stamp(path) == first and first.startswith("3:")
    mtime = path.stat().st_mtime_ns
    path.write_bytes(b"abcd")  # another size
    os.utime(path, ns=(mtime, mtime))
    assert file_stamp(path) not in (first, "missing")
    path.write_bytes(b"xyz")  # the same size, back to the first mtime: the rule cannot see it
    os.utime(path, ns=(mtime, mtime))
    assert file_stamp(path) == first
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))  # touched
    assert file_stamp(path) != first


def test_the_file_change_rule_is_written_once():
    """Every cache key and digest built from files (crops, COCO views, video sources, the
    feature cache, the MLflow dataset digest) stamps them with `file_stamp`."""
    users = sorted({str(path.relative_to(REPO_ROOT)) for room in ("datasets", "trainables", "orchestrator")
                    for path in (REPO_ROOT / room).rglob("*.py") if "st_mtime" in path.read_text()})
    assert users == ["datasets/cache.py"]


def test_the_dataset_digest_changes_when_a_file_is_rewritten_at_the_same_size(tmp_path):
    from orchestrator.tracking.dataset_inputs import listing_digest

    (tmp_path / "a.png").write_bytes(b"abc")
    before = listing_digest.__wrapped__(str(tmp_path))
    os.utime(tmp_path / "a.png", ns=(1, 1))
    after = listing_digest.__wrapped__(str(tmp_path))
    assert after[1] == before[1] == 1 and after[0] != before[0]


def test_a_crop_of_a_missing_image_is_an_error_naming_it(tmp_path, monkeypatch):
    """Issue 23, finding 2: a path that is not there is an error, never a smaller set."""
    from datasets.crops import CropRequest, write_crops

    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="gone.png"):
        write_crops(tmp_path, "test", [CropRequest(tmp_path / "gone.png", (0, 0, 4, 4))])


def test_a_folder_nested_in_an_object_store_cache_is_mirrored_too(tmp_path, monkeypatch):
    """The evaluation's features live at <cache>/features/<key>: on an object-store cache
    they must reach the store like the top-level data folders (issue 23, object storage)."""
    from datasets.cache import build_once, cache_root

    monkeypatch.setenv("DSSL_CACHE_DIR", str(tmp_path / "local"))
    store = tmp_path / "store"
    build_once(cache_root(f"file://{store}") / "features" / "key", lambda tmp: (tmp / "f.txt").write_text("x"))
    assert (store / "features" / "key" / "f.txt").read_text() == "x"
    assert (store / "features" / "key" / ".complete").is_file()
