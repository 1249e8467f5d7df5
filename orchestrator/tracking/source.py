"""MLflow's own source tags (the UI's Source and User columns) and the code's git state."""
from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

from datasets.ray_connection import REPO_ROOT
from orchestrator.tracking.keys import TAG_GIT_DIRTY

GIT_COMMIT_ENV_VAR = "DSSL_GIT_COMMIT"  # the submitter's commit where there is no clone (the image, a job)


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or not a clone (a `ray job submit` working directory)


def git_commit() -> str:
    """The submitter's commit: `DSSL_GIT_COMMIT` when set, else what git says here.

    The variable carries it where there is no clone: the project's image (built with
    `--build-arg GIT_COMMIT=$(git rev-parse HEAD)`, orchestrator/clusters/Dockerfile) and
    a job submitted with it in `--runtime-env-json`'s `env_vars`.
    """
    return os.environ.get(GIT_COMMIT_ENV_VAR, "").strip() or _git("rev-parse", "HEAD") or "unknown"


def git_dirty() -> str:
    """Whether tracked files differ from the commit: "true", "false", or "unknown" without git."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return "unknown" if status is None else str(bool(status)).lower()


def source_name(argv0: str | None = None) -> str:
    """The entry script, relative to the repository when inside it (as the Source column shows)."""
    script = Path(argv0 if argv0 is not None else (sys.argv[0] or "python")).resolve()
    try:
        return str(script.relative_to(REPO_ROOT))
    except ValueError:
        return script.name


def source_tags(script: str | None = None) -> dict[str, str]:
    """MLflow's own run tags (Source and User columns) and whether the tree was clean."""
    tags = {MLFLOW_SOURCE_NAME: source_name(script), MLFLOW_SOURCE_TYPE: "LOCAL",
            MLFLOW_USER: _user(), TAG_GIT_DIRTY: git_dirty()}
    commit = git_commit()
    if commit != "unknown":
        tags[MLFLOW_GIT_COMMIT] = commit
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"
