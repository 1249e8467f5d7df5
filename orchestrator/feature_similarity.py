"""Feature similarity between runs' backbones: linear CKA of every stage of one trunk with
every stage of another, on one set of images, logged to MLflow as a table and a heatmap.

    python -m orchestrator.feature_similarity RUN_ID RUN_ID [RUN_ID ...]
        [--tracking-uri URI] [--images DIR] [--max-images 256] [--image-size N]

The analysis of Neyshabur et al. 2020 ("What is being transferred in transfer
learning?"): two seeds of one method, two methods, pretrained against fine-tuned. Each run
is one that holds a backbone checkpoint (tag `dssl.checkpoint`: a sweep's trial, or a run of
`orchestrator.score`), read with weights_only=True. The images are every image file under
--images (sorted, evenly thinned to --max-images), by default the validation split of the
default probe set (generated once into the cache), seen through the evaluation transform.

It logs one new run in the first run's experiment, named `cka <run> vs <run>`: the compared
runs and settings as params, and for every pair of runs a table
(`similarity/<a>_vs_<b>.json`, MLflow's table format, and `.csv`: rows the stages of the
first, columns those of the second) and a heatmap (`charts/cka_<a>_vs_<b>.png`); with two
runs, the diagonal (a stage against the same stage) also as metrics `cka/<stage>`. A new run,
not a write into a compared run: the result belongs to the pair, not to the first one named,
and finished trials keep the record of their own trial.
"""
from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MAX_IMAGES = 256
DEFAULT_IMAGE_SIZE = 64  # the project's default image size, when the first run has none
TAG_COMPARED_RUNS = "dssl.similarity.runs"


class RunCheckpointError(LookupError):
    pass


def image_paths(root: Path | str, max_images: int) -> list[Path]:
    """Every image file under `root`, sorted, thinned to `max_images` evenly spaced ones (so
    a class-folder root keeps every class)."""
    from datasets.image_folder import is_image_file

    paths = sorted(p for p in Path(root).rglob("*") if p.is_file() and is_image_file(p))
    if not paths:
        raise FileNotFoundError(f"{root}: no image files under it")
    if max_images < 2:
        raise ValueError(f"max_images={max_images} must be at least 2 (CKA compares samples)")
    if len(paths) > max_images:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, max_images).round().astype(int)]
    return paths


def load_images(paths: list[Path], image_size: int):
    """The decodable images of `paths` through the evaluation transform, stacked, and the
    paths kept (an undecodable file is skipped for every run alike)."""
    import torch

    from datasets.image_folder import load_rgb
    from trainables.augment import eval_transform

    transform = eval_transform(image_size)
    kept, images = [], []
    for path in paths:
        image = load_rgb(path)
        if image is not None:
            images.append(transform(image))
            kept.append(path)
    if len(images) < 2:
        raise ValueError(f"only {len(images)} of {len(paths)} images could be decoded; CKA needs at least 2")
    return torch.stack(images), kept


def run_checkpoint(run, scratch: Path) -> Path:
    """The checkpoint file of `run`: its `dssl.checkpoint` tag, a file (a run of
    orchestrator.score) or a checkpoint folder, local or on object storage (a sweep's trial)."""
    from orchestrator.tracking.checkpoints import checkpoint_file
    from orchestrator.tracking.keys import TAG_CHECKPOINT

    checkpoint = run.data.tags.get(TAG_CHECKPOINT)
    if not checkpoint:
        raise RunCheckpointError(f"run {run.info.run_id} has no {TAG_CHECKPOINT} tag: not a trial whose model "
                                 "was logged, nor a run of orchestrator.score")
    if "://" not in checkpoint and Path(checkpoint).is_file():
        return Path(checkpoint)
    return checkpoint_file(checkpoint, scratch)


def stage_grams(backbone, images, batch_size: int) -> dict[str, np.ndarray]:
    """Each trunk stage's normalised centred Gram matrix on `images` (n x n each)."""
    from trainables.features import extract_stage_features
    from trainables.similarity import normalized_centered_gram

    features = extract_stage_features(backbone, images, batch_size, "cpu")
    return {stage: normalized_centered_gram(f) for stage, f in features.items()}


def heatmap(matrix: np.ndarray, rows: list[str], columns: list[str], row_run: str, column_run: str):
    """The layer x layer CKA matrix as an annotated heatmap on [0, 1]."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.0 + 0.8 * len(columns), 1.0 + 0.7 * len(rows)), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    axes.set_xticks(range(len(columns)), columns)
    axes.set_yticks(range(len(rows)), rows)
    axes.set_xlabel(column_run)
    axes.set_ylabel(row_run)
    for i in range(len(rows)):
        for j in range(len(columns)):
            axes.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize="small",
                      color="black" if matrix[i, j] > 0.6 else "white")
    axes.set_title("linear CKA")
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


def feature_similarity(run_ids: list[str], tracking_uri: str, images_root: str = "",
                       max_images: int = DEFAULT_MAX_IMAGES, image_size: int = 0, batch_size: int = 64,
                       data_cache: str = "") -> tuple[str, dict[tuple[str, str], np.ndarray]]:
    """Compare the backbones of `run_ids` pairwise; log the result as a new MLflow run.
    Returns its run id and the CKA matrix of each pair (keyed by the two run ids)."""
    import pandas as pd
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking.source import source_tags
    from trainables.features import TRUNK_STAGES
    from trainables.similarity import cka_matrix
    from trainables.weights import load_backbone_weights

    if len(set(run_ids)) < 2:
        raise ValueError("feature similarity compares at least two different runs")
    client = MlflowClient(tracking_uri)
    runs = [client.get_run(run_id) for run_id in run_ids]
    image_size = image_size or int(runs[0].data.params.get("image_size", DEFAULT_IMAGE_SIZE))
    if not images_root:
        from orchestrator.config import preset

        changes = {"image_size": image_size} | ({"data_cache": data_cache} if data_cache else {})
        trial = preset("default").override(changes)
        images_root = str(Path(trial.root("probe")) / "val")
    images, kept = load_images(image_paths(images_root, max_images), image_size)
    log.info("feature similarity of %d runs on %d images of %s at %d px", len(runs), len(kept), images_root, image_size)

    grams, archs = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for run in runs:
            weights = load_backbone_weights(run_checkpoint(run, Path(scratch)))
            archs[run.info.run_id] = weights.arch
            grams[run.info.run_id] = stage_grams(weights.build(), images, batch_size)

    stages = list(TRUNK_STAGES)
    names = {run.info.run_id: run.info.run_name or run.info.run_id[:8] for run in runs}
    pairs = [(a, b) for i, a in enumerate(run_ids) for b in run_ids[i + 1:] if a != b]
    matrices = {(a, b): cka_matrix([grams[a][s] for s in stages], [grams[b][s] for s in stages]) for a, b in pairs}

    out = client.create_run(runs[0].info.experiment_id,
                            run_name="cka " + " vs ".join(names[r] for r in dict.fromkeys(run_ids)))
    out_id = out.info.run_id
    params = {"images": images_root, "n_images": len(kept), "image_size": image_size, "measure": "linear_cka",
              "features": "flattened stage outputs", "stages": ",".join(stages)}
    params |= {f"run.{i}": f"{r} ({names[r]}, {archs[r]})" for i, r in enumerate(dict.fromkeys(run_ids))}
    metrics = []
    if len(pairs) == 1:
        diagonal = np.diag(matrices[pairs[0]])
        metrics = [Metric(f"cka/{s}", float(v), 0, 0) for s, v in zip(stages, diagonal)]
    client.log_batch(out_id, params=[Param(k, str(v)) for k, v in params.items()], metrics=metrics,
                     tags=[RunTag(TAG_COMPARED_RUNS, ",".join(dict.fromkeys(run_ids)))]
                     + [RunTag(k, v) for k, v in source_tags().items()])
    for (a, b), matrix in matrices.items():
        label = f"{a[:8]}_vs_{b[:8]}"
        frame = pd.DataFrame(matrix, columns=stages).assign(**{"stage": stages})[["stage", *stages]]
        client.log_table(out_id, data=frame, artifact_file=f"similarity/{label}.json")
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        client.log_text(out_id, buffer.getvalue(), f"similarity/{label}.csv")
        client.log_figure(out_id, heatmap(matrix, stages, stages, names[a], names[b]), f"charts/cka_{label}.png")
    client.set_terminated(out_id, "FINISHED")
    return out_id, matrices


def main(argv: list[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException

    from orchestrator.tracking.store import resolve_tracking_uri
    from trainables.features import TRUNK_STAGES
    from trainables.weights import CheckpointFormatError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("run_ids", nargs="+", metavar="RUN_ID",
                        help="MLflow runs holding a backbone checkpoint (two or more)")
    parser.add_argument("--tracking-uri", default="",
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--images", default="",
                        help="folder of images to compare on (default: the default probe set's val split)")
    parser.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES,
                        help="at most this many images (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=0,
                        help="image side in pixels (default: the first run's image_size)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        run_id, matrices = feature_similarity(args.run_ids, uri, args.images, args.max_images, args.image_size)
    except (ValueError, FileNotFoundError, RunCheckpointError, CheckpointFormatError, MlflowException) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stages = list(TRUNK_STAGES)
    for (a, b), matrix in matrices.items():
        print(f"linear CKA, rows {a[:8]}, columns {b[:8]}:")
        print("        " + "".join(f"{s:>8}" for s in stages))
        for stage, row in zip(stages, matrix):
            print(f"{stage:>8}" + "".join(f"{v:8.3f}" for v in row))
    print(f"MLflow: run {run_id} in {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
