"""A cache folder for generated data, built once and safely under concurrent callers.

Ray workers on one node call the same ``ensure_*`` generator at the same time; the
first one builds, the others wait on a file lock and then reuse the result. A build
goes into a temporary sibling folder that is renamed into place only when complete, so
a crashed or killed build never leaves a half-written dataset behind.

On a multi-node cluster the cache can be an object-store URI (``s3://bucket/data-cache``,
``gs://...``): each node keeps a local copy, and a folder missing on a node is downloaded
from the URI rather than generated; the first node to build it (the sweep's driver, before
any trial) uploads it there. So synthetic data is generated once per cluster, never by
GPU workers.
"""
from __future__ import annotations

import glob
import logging
import multiprocessing
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

CACHE_ENV_VAR = "DSSL_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/demystify-ssl")
COMPLETE_MARKER = ".complete"


# Local cache folders that mirror an object-store URI (cache_root("s3://...")), by path.
_MIRRORS: dict[str, str] = {}

# The trial's data_cache while a reader that caches on its own runs (using_data_cache).
_DATA_CACHE: ContextVar[str] = ContextVar("data_cache", default="")


@contextmanager
def using_data_cache(data_cache: str) -> Iterator[None]:
    """Within the block, :func:`cache_root` without an override is `data_cache` (a
    trial's), so what a reader caches for itself (crops of a real root, datasets.crops)
    goes where the trial's generated data goes: on a cluster, shared storage, never one
    node's user cache. An empty `data_cache` changes nothing."""
    token = _DATA_CACHE.set(data_cache)
    try:
        yield
    finally:
        _DATA_CACHE.reset(token)


def is_uri(path: str) -> bool:
    return "://" in str(path)


def cache_root(override: str = "") -> Path:
    """The cache folder: ``override``, else the trial's (:func:`using_data_cache`), else
    ``$DSSL_CACHE_DIR``, else ``~/.cache/demystify-ssl``.

    A URI (``s3://...``, ``gs://...``, ``file://...``) gives a local folder mirroring it
    (under the local default), from which :func:`build_once` downloads and to which it
    uploads.
    """
    chosen = override or _DATA_CACHE.get() or os.environ.get(CACHE_ENV_VAR, "") or str(DEFAULT_CACHE_DIR)
    if not is_uri(chosen):
        return Path(chosen).expanduser().resolve()
    import hashlib

    uri = chosen.rstrip("/")
    local_default = os.environ.get(CACHE_ENV_VAR, "") or str(DEFAULT_CACHE_DIR)
    if is_uri(local_default):
        local_default = str(DEFAULT_CACHE_DIR)
    folder = Path(local_default).expanduser().resolve() / f"mirror-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"
    _MIRRORS[str(folder)] = uri
    return folder


def _mirror_download(uri: str, tmp: Path) -> bool:
    """Copy a complete mirrored folder `uri` into `tmp`; False if the mirror has none."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    if fs.get_file_info(f"{path}/{COMPLETE_MARKER}").type != pafs.FileType.File:
        return False
    pafs.copy_files(path, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    (tmp / COMPLETE_MARKER).unlink(missing_ok=True)  # marked again once renamed into place
    log.info("downloaded %s", uri)
    return True


def _mirror_upload(tmp: Path, uri: str) -> None:
    """Copy a built folder to `uri`, its completion marker last (readers wait for it)."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(tmp), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    with fs.open_output_stream(f"{path}/{COMPLETE_MARKER}") as out:
        out.write(b"complete\n")
    log.info("uploaded %s", uri)


def _mirror_of(target: Path) -> str | None:
    """The URI that mirrors `target`, a folder in a mirror (``<mirror>/features/<key>``
    too: the evaluation's features are one level down), or None."""
    for folder in target.parents:
        if (uri := _MIRRORS.get(str(folder))) is not None:
            return f"{uri}/{target.relative_to(folder).as_posix()}"
    return None


def cache_key(name: str, version: int, **params: object) -> str:
    """A folder name that changes whenever the generator or any of its parameters does.

    ``cache_key("synthetic-aloi", 1, objects=200, size=64, seed=0)`` is
    ``"synthetic-aloi-v1-objects200-seed0-size64"`` (parameters in sorted order).
    Bumping ``version`` when the generator's output changes keeps stale data from
    being reused.
    """
    parts = [name, f"v{version}"] + [f"{key}{params[key]}" for key in sorted(params)]
    key = "-".join(str(part) for part in parts)
    if not re.fullmatch(r"[A-Za-z0-9._=-]+", key):
        raise ValueError(f"cache key {key!r} has characters unsafe for a folder name")
    return key


def file_stamp(path: str | Path) -> str:
    """The project's one file-change check: ``"<size>:<mtime_ns>"`` of `path`, or
    ``"missing"`` when it cannot be stat'ed (absent, unreadable).

    The rule: a file counts as unchanged while its size and modification time are, so a
    cache key or digest built from stamps changes when a file is added, removed, rewritten
    or touched, without reading it. A rewrite to the same size within the filesystem's
    timestamp resolution goes unseen (as for make and rsync's quick check); a copy of the
    same bytes with a new mtime counts as changed, which costs a rebuild, never a stale one.
    """
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def is_complete(target: Path) -> bool:
    """True when ``target`` was fully built by :func:`build_once`."""
    return (target / COMPLETE_MARKER).is_file()


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Return ``target``, calling ``build(tmp_dir)`` first if it is not built yet.

    ``build`` writes the content into the empty folder it is given; that folder is
    marked complete and atomically renamed to ``target``. An exclusive lock on the
    sibling ``<target>.lock`` (``filelock``) serialises builders across processes on one
    machine (file locks are not reliable on some network file systems: keep the cache on
    local disk).
    """
    target = Path(target)
    if is_complete(target):
        return target
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A generator's spawned worker is re-importing an unguarded main script, which
        # calls us again: it would wait forever on the lock its parent holds.
        raise RuntimeError(
            f"building {target} from a process that is still starting up; guard the "
            "script's entry point with `if __name__ == '__main__':`"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f"{target.name}.lock"
    with FileLock(lock_path):
        # Another process may have finished the build while we waited for the lock.
        if is_complete(target):
            return target
        if target.exists():
            # Only a foreign or pre-marker folder can be here (our builds appear
            # atomically, complete); it cannot be trusted, so rebuild it.
            log.warning("rebuilding incomplete cache folder %s", target)
            shutil.rmtree(target)
        # Temporary folders left by a killed builder: only the lock holder builds.
        for orphan in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):
            shutil.rmtree(orphan, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        mirror = _mirror_of(target)
        try:
            if mirror is None:
                build(tmp)
            elif not _mirror_download(mirror, tmp):
                build(tmp)
                _mirror_upload(tmp, mirror)
            (tmp / COMPLETE_MARKER).write_text("complete\n")
            tmp.chmod(0o755)  # mkdtemp makes it private; the data is not secret
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("built %s", target)
        return target
