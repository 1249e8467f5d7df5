"""Score any checkpoint: RIS on the trial's invariance sets and its probes, logged as one
MLflow run with the same keys as a sweep's trials.

Reads this project's checkpoints, official MoCo checkpoints and torchvision ResNet state
dicts (trainables.weights); features come from the cached Ray Data path
(trainables.features.RayDataFeatures), so scoring the same weights again extracts nothing.

    python -m orchestrator.score ray_results/<sweep>-train/<trial>/checkpoint_epoch_0001/checkpoint.pt
    python -m orchestrator.score moco_v2_800ep_pretrain.pth.tar --preset paper \\
        --set data.aloi.root=/data/aloi --set data.probe.root=/data/imagenet
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from orchestrator.config import PRESETS, ConfigError, TrialConfig, parse_overrides, preset

log = logging.getLogger(__name__)


def evaluation_roles(trial: TrialConfig) -> set[str]:
    """The data roles the invariance sets and probes read (not the method's own)."""
    return {role for _, part in trial.consumers()[1:] for role in part.roles}


def evaluation_problems(trial: TrialConfig) -> list[str]:
    """The trial's problems, less those of its pretraining (method, and data only it reads)."""
    pretraining_only = set(trial.method.roles) - evaluation_roles(trial)
    return [p for p in trial.problems() if not p.startswith("method.")
            and not any(p.startswith((f"data.{role}.", f"data.{role}:", f"data.{role}=")) for role in pretraining_only)]


def evaluation_params(trial: TrialConfig) -> dict[str, Any]:
    """The trial keys that shape an evaluation (not the pretraining's)."""
    roles = evaluation_roles(trial)
    keep = ("image_size", "eval_batch_size", "ris_max_objects", "ris_sign", "ris_local_rate", "ris_weighting",
            "eval_layer", "seed",
            "invariances", "probes")
    return {k: v for k, v in trial.flat().items()
            if k in keep or k.startswith(("invariances.", "probes."))
            or (k.startswith("data.") and k.split(".")[1] in roles)}


def score_checkpoint(path: Path | str, trial: TrialConfig, tracking_uri: str = "", experiment: str = "",
                     run_name: str = "", max_actors: int = 0) -> tuple[dict[str, float], Any]:
    """Metrics of the checkpoint at `path` (a file, or a sweep's checkpoint folder holding
    `checkpoint.pt`) under `trial`'s evaluation; logged to MLflow when `tracking_uri` is
    given. Returns the metrics and the feature extractor (its counts)."""
    from datasets.ray_connection import init_ray
    from trainables.evaluation import evaluate
    from trainables.features import RayDataFeatures
    from trainables.pretrain import CHECKPOINT_FILE
    from trainables.weights import load_backbone_weights

    if Path(path).is_dir() and (Path(path) / CHECKPOINT_FILE).is_file():
        path = Path(path) / CHECKPOINT_FILE

    weights = load_backbone_weights(path)
    trial = trial.override({"arch": weights.arch})
    if problems := evaluation_problems(trial):
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    init_ray()
    features = RayDataFeatures(weights, trial.image_size, trial.eval_batch_size, cache=trial.data_cache,
                               use_gpu=trial.use_gpu, max_actors=max_actors, layer=trial.eval_layer)
    metrics = evaluate(None, trial, "cuda" if trial.use_gpu else "cpu", features=features)
    if tracking_uri:
        _log_run(path, weights, trial, metrics, tracking_uri, experiment, run_name)
    return metrics, features


def _log_run(path, weights, trial, metrics, tracking_uri, experiment, run_name) -> str:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking.keys import metrics_of, split_constants
    from orchestrator.tracking.source import git_commit

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name=run_name or f"score {Path(path).name}")
    params = evaluation_params(trial) | {"arch": weights.arch, "checkpoint.format": weights.source_format}
    scores, figures = split_constants(metrics_of(metrics))
    tags = {"dssl.checkpoint": str(Path(path).resolve()), "dssl.checkpoint_digest": weights.digest,
            "git_commit": git_commit(), **figures}
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())],
                     tags=[RunTag(k, v) for k, v in tags.items()],
                     metrics=[Metric(k, v, 0, 0) for k, v in scores.items()])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def main(argv: list[str] | None = None) -> int:
    from orchestrator.report import table
    from orchestrator.tracking.store import resolve_tracking_uri
    from trainables.weights import CheckpointFormatError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("checkpoint", help="project checkpoint.pt, official MoCo .pth.tar, or torchvision state dict")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="evaluation settings to start from (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a trial key, e.g. --set invariances=viewpoint (repeatable)")
    parser.add_argument("--tracking-uri", default="", help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--experiment", default="demystify-ssl-scores", help="MLflow experiment name")
    parser.add_argument("--run-name", default="", help="MLflow run name (default: score <file>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        trial = preset(args.preset).override(parse_overrides(args.overrides))
        uri = resolve_tracking_uri(args.tracking_uri)
        metrics, features = score_checkpoint(args.checkpoint, trial, uri, args.experiment, args.run_name)
    except (ConfigError, CheckpointFormatError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table([metrics], []))
    print(f"features: {features.extracted} images extracted, {features.reused} read from the cache; "
          f"MLflow: experiment {args.experiment!r} in {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
