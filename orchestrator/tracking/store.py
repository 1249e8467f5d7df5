"""The MLflow store: its URI, where new experiments keep their artifacts, the experiment."""
from __future__ import annotations

import os
from pathlib import Path

from mlflow.tracking import MlflowClient

from datasets.registry import ConfigError
from orchestrator.tracking.keys import EXPERIMENT_KIND_TRAINING, TAG_EXPERIMENT_KIND

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
ARTIFACTS_FOLDER = "mlartifacts"  # beside a SQLite store, as `mlflow server` names its own


def resolve_tracking_uri(uri: str = "") -> str:
    """The explicit URI, else $MLFLOW_TRACKING_URI, else MLflow's own default store.

    A relative sqlite path is made absolute so that the UI command printed at the end
    works from any folder.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        uri = prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts, chosen explicitly.

    Beside a SQLite store (`<store folder>/mlartifacts`), so that artifacts survive with
    the store; a relative default would land in the process's working directory, which
    under `ray job submit` is a temporary copy deleted with the job. A tracking server
    (http/https) keeps its own default: its proxied artifact store. A database server has
    no folder to sit beside: a sweep refuses it (`orchestrator.mlflow_server.check_tracking_uri`).
    """
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        return (Path(tracking_uri[len(prefix):]).resolve().parent / ARTIFACTS_FOLDER).as_uri()
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        store = Path(tracking_uri.removeprefix("file://").removeprefix("file:"))
        return (store.resolve().parent / ARTIFACTS_FOLDER).as_uri()
    return None


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The experiment's id, created (artifacts beside the store) or reused, tagged for training runs."""
    found = client.get_experiment_by_name(name)
    if found is None:
        experiment_id = client.create_experiment(name, artifact_location=artifact_location(tracking_uri))
    else:
        experiment_id = found.experiment_id
        if found.lifecycle_stage == "deleted":
            raise ConfigError(f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments "
                              "restore) or choose another --experiment")
    client.set_experiment_tag(experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_TRAINING)
    return experiment_id
