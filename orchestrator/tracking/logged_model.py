"""A trial's final backbone, logged as an MLflow model on its child run."""
from __future__ import annotations

import logging
from pathlib import Path

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from orchestrator.tracking.keys import ERROR_TAG_CHARS, TAG_EXPORT_ERROR, TAG_MODEL_FORMAT
from trainables.config import TrialConfig

log = logging.getLogger(__name__)

MODEL_NAME = "backbone"


def log_backbone(client: MlflowClient, experiment_id: str, run_id: str, trial: TrialConfig,
                 checkpoint_file: Path, registered_model_name: str = "") -> str:
    """Log a trial's final backbone as an MLflow model on its child run; return the model URI.

    The backbone is rebuilt on the driver from the trial's last checkpoint (read with
    weights_only=True, trainables.evaluation.load_backbone), with an input example of the
    trial's image size so the model has a signature. `mlflow.pytorch.log_model` writes
    through the process's tracking URI, so it is pointed at this store for the call, and
    it would file the model under the process's active experiment, so the model is
    created here first, in the run's experiment, with the trial's params. The
    requirements are given, not inferred: inference loads the model in a subprocess.

    The model is saved with torch.export (`pt2`: loading it runs no pickled code). A
    backbone torch.export cannot trace is saved pickled instead, and says so: the run and
    the logged model are tagged `dssl.model_format` = `pickle`, with the reason in
    `dssl.export_error` (`pt2` otherwise), as README promises.
    """
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch
    import torchvision

    from trainables.evaluation import load_backbone

    backbone = load_backbone(trial, checkpoint_file)
    # A batch of two: torch.export keeps a size-1 dimension static, and the batch should not be.
    example = np.random.default_rng(0).standard_normal(
        (2, 3, trial.image_size, trial.image_size)).astype(np.float32)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        def log_as(serialization_format: str):
            # A logged model per attempt: a failed attempt has already linked its model to the
            # run as an output, and a second link of the same pair is refused by the store.
            model = client.create_logged_model(experiment_id, name=MODEL_NAME, source_run_id=run_id,
                                               params={k: str(v) for k, v in trial.flat().items()})
            try:
                return mlflow.pytorch.log_model(
                    backbone, name=MODEL_NAME, run_id=run_id, model_id=model.model_id, input_example=example,
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                                      f"torchvision=={torchvision.__version__.split('+')[0]}"],
                    registered_model_name=registered_model_name or None,
                    serialization_format=serialization_format,
                )
            except Exception:
                client.delete_logged_model(model.model_id)  # no half-written model beside the real one
                raise
        tags = {TAG_MODEL_FORMAT: "pt2"}
        try:
            info = log_as("pt2")
        except Exception as err:  # noqa: BLE001 - a part's backbone torch.export cannot trace
            reason = f"{type(err).__name__}: {err}"[:ERROR_TAG_CHARS]
            log.warning("torch.export failed on %s's backbone (%s); logging it pickled, tagged %s=pickle",
                        trial.method.name, reason.splitlines()[0], TAG_MODEL_FORMAT)
            tags = {TAG_MODEL_FORMAT: "pickle", TAG_EXPORT_ERROR: reason}
            info = log_as("pickle")
    finally:
        mlflow.set_tracking_uri(previous)
    client.set_logged_model_tags(info.model_id, tags)
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    return info.model_uri
