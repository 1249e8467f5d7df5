"""The datasets a trial read, as its child run's inputs (the UI's Datasets column)."""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from datasets.cache import file_stamp
from trainables.config import TrialConfig


@functools.lru_cache(maxsize=64)
def listing_digest(root: str) -> tuple[str, int]:
    """A digest of a dataset's file listing (relative paths and `file_stamp`s) and its
    file count.

    Cheap next to reading the images, and it changes when a file is added, removed or
    rewritten (the file-change rule of `datasets.cache.file_stamp`): enough to tell two
    datasets apart in the UI.
    """
    digest, count = hashlib.sha256(), 0
    base = Path(root)
    entries = []
    for folder, _, files in os.walk(base):
        for name in files:
            path = Path(folder) / name
            entries.append(f"{path.relative_to(base).as_posix()}\t{file_stamp(path)}\n")
    for entry in sorted(entries):
        digest.update(entry.encode())
        count += 1
    return digest.hexdigest()[:16], count


def dataset_inputs(trial: TrialConfig) -> list[DatasetInput]:
    """The datasets a trial read, one per data role: what the UI's Datasets column lists.

    Named `<role>:<source>`, with the root as a local source and a digest of its file
    listing; the context says whether the method trained on it or evaluation read it.
    """
    inputs = []
    for role, source in trial.data.items():
        root = str(trial.root(role).resolve())
        if Path(root).is_dir():
            digest, count = listing_digest(root)
            profile = json.dumps({"num_files": count})
        else:  # a remote root: its name stands in for its listing
            digest, profile = hashlib.sha256(root.encode()).hexdigest()[:16], None
        context = "training" if role in trial.method.roles else "evaluation"
        dataset = Dataset(name=f"{role}:{source.name}", digest=digest, source_type="local",
                          source=json.dumps({"uri": root}), profile=profile)
        inputs.append(DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return inputs
