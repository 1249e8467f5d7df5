"""A cache folder for generated data, built once and safely under concurrent callers.

Ray workers on one node call the same ``ensure_*`` generator at the same time; the
first one builds, the others wait on a file lock and then reuse the result. A build
goes into a temporary sibling folder that is renamed into place only when complete, so
a crashed or killed build never leaves a half-written dataset behind.
"""
from __future__ import annotations

import glob
import logging
import multiprocessing
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

CACHE_ENV_VAR = "DSSL_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/demystify-ssl")
COMPLETE_MARKER = ".complete"


def cache_root(override: str = "") -> Path:
    """The cache folder: ``override``, else ``$DSSL_CACHE_DIR``, else ``~/.cache/demystify-ssl``."""
    chosen = override or os.environ.get(CACHE_ENV_VAR, "") or str(DEFAULT_CACHE_DIR)
    return Path(chosen).expanduser().resolve()


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
        try:
            build(tmp)
            (tmp / COMPLETE_MARKER).write_text("complete\n")
            tmp.chmod(0o755)  # mkdtemp makes it private; the data is not secret
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("built %s", target)
        return target
