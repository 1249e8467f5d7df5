"""The names runs are written with: tag keys, the metric prefixes logged, and how a Tune
result splits into metrics (stepped) and tags (a trial's constants). Metric keys are
those of shared/DESIGN.md."""
from __future__ import annotations

import math
from typing import Any

METRIC_PREFIXES = ("pretrain/", "ris/", "probe/", "data/", "tracks/", "analysis/")
# A trial's data figures (image counts, targets scored, skipped files) are constants of the
# trial, not measurements over time: logged as tags, so MLflow's charts and compare page
# show the science, not a bar chart of equal counts.
CONSTANT_PREFIX = "data/"
TAG_SWEEP = "dssl.sweep"
TAG_SWEEP_DIR = "dssl.sweep_dir"
TAG_TRIAL_ID = "dssl.trial_id"
TAG_GIT_DIRTY = "dssl.git_dirty"  # "true" when the tree had uncommitted changes to tracked files
TAG_ERROR = "dssl.error"  # a failed trial's error
TAG_CHECKPOINT = "dssl.checkpoint"  # the checkpoint the child's logged model was read from
TAG_MODEL_URI = "dssl.model_uri"
TAG_MODEL_FORMAT = "dssl.model_format"  # "pt2" (torch.export), or "pickle" when export failed
TAG_EXPORT_ERROR = "dssl.export_error"  # why torch.export failed, when the model is pickled
TAG_COMPARE_URL = "dssl.compare_url"  # parent: the compare-runs page of its children
TAG_RUNS_URL = "dssl.runs_url"  # parent: the runs table filtered to its children
TAG_TRACKING_ERRORS = "dssl.tracking_errors"  # parent: MLflow writes lost after retries
TAG_KNOBS = "dssl.knobs"  # parent: the swept knobs, comma separated (rows of its tables)
TAG_PARENT = "mlflow.parentRunId"  # MLflow's own key: the UI nests child runs by it
# MLflow 3's UI reads this experiment tag to choose its page: "custom_model_development"
# opens the training-runs view, anything GenAI (or no tag on an empty experiment) the
# traces overview (mlflow/server/js: ExperimentKind.CUSTOM_MODEL_DEVELOPMENT).
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
ERROR_TAG_CHARS = 4000  # MLflow caps tag values; the end of a traceback says the most


def metrics_of(result: dict[str, Any]) -> dict[str, float]:
    """The project's metrics in a Tune result (names as in shared/DESIGN.md)."""
    out = {}
    for key, value in result.items():
        if key.startswith(METRIC_PREFIXES) and isinstance(value, (int, float)):
            if not isinstance(value, bool) and math.isfinite(value):
                out[key] = float(value)
    return out


def split_constants(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, tags): the `data/*` figures of a result become tag values."""
    tags = {k: f"{v:g}" for k, v in metrics.items() if k.startswith(CONSTANT_PREFIX)}
    return {k: v for k, v in metrics.items() if k not in tags}, tags
