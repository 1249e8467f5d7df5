"""A checkpoint a trial reported, as a location a user can open and as a file to read."""
from __future__ import annotations

from pathlib import Path


def checkpoint_uri(checkpoint_dir: str, sweep_dir: str) -> str:
    """A reported checkpoint folder as a location a user can open: Tune reports a checkpoint
    on object storage as a path inside the bucket (``bucket/...``), without the sweep's scheme."""
    scheme, sep, _ = sweep_dir.partition("://")
    if sep and "://" not in checkpoint_dir and not Path(checkpoint_dir).is_absolute():
        return f"{scheme}://{checkpoint_dir}"
    return checkpoint_dir


def checkpoint_file(checkpoint: str, scratch: Path) -> Path:
    """`checkpoint.pt` of a checkpoint folder (a local path or a `checkpoint_uri`), copied to
    `scratch` when it is on remote storage."""
    from trainables.pretrain import CHECKPOINT_FILE

    if "://" not in checkpoint:
        return Path(checkpoint) / CHECKPOINT_FILE
    import pyarrow.fs

    filesystem, folder = pyarrow.fs.FileSystem.from_uri(checkpoint)
    target = scratch / CHECKPOINT_FILE
    with filesystem.open_input_stream(f"{folder.rstrip('/')}/{CHECKPOINT_FILE}") as src:
        target.write_bytes(src.read())
    return target
