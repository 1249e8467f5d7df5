"""Feature similarity between runs' backbones: linear CKA of every stage of one trunk with
every stage of another, on one set of images, logged to MLflow as a table and a heatmap.

    python -m orchestrator.feature_similarity RUN_ID RUN_ID [RUN_ID ...]
        [--tracking-uri URI] [--images DIR] [--max-images 256] [--image-size N]

    python -m orchestrator.feature_similarity --study SWEEP_NAME --arm mocov2

The analysis of Neyshabur et al. 2020 ("What is being transferred in transfer
learning?"): two seeds of one method, two methods, pretrained against fine-tuned. With
--study, a study's arm: every pair of its seeds against the same seeds' random
initialisations, stage by stage, with the paired difference's 95% interval and a verdict
(trained networks are closer to each other than their initialisations were), logged on
the study's parent run (tables/feature_similarity_<arm>.md, .csv, and a chart). Each run
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
from dataclasses import dataclass
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


def initial_weights_checkpoint(run, scratch: Path) -> Path:
    """An epochs=0 (random-init) row's weights: its seed's initial model, rebuilt from the
    run's params as the row's own evaluation rebuilt it (such a row trains nothing, and logs
    no model)."""
    from orchestrator.config import preset
    from trainables.pretrain import save_initial_checkpoint

    path = scratch / f"initial-{run.info.run_id}.pt"
    save_initial_checkpoint(path, preset("default").override(dict(run.data.params)))
    return path


def run_grams(runs, images, batch_size: int, checkpoint=run_checkpoint
              ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Per run id: each stage's normalised centred Gram matrix on `images`, and the arch;
    `checkpoint(run, scratch)` finds each run's checkpoint file."""
    from trainables.weights import load_backbone_weights

    grams, archs = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for run in runs:
            weights = load_backbone_weights(checkpoint(run, Path(scratch)))
            archs[run.info.run_id] = weights.arch
            grams[run.info.run_id] = stage_grams(weights.build(), images, batch_size)
    return grams, archs


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

    grams, archs = run_grams(runs, images, batch_size)

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


# -- the seed-pair analysis of a study -----------------------------------------------------
SEED_PAIR_FILES = ("tables/feature_similarity_{arm}.md", "tables/feature_similarity_{arm}.csv",
                   "charts/feature_similarity_{arm}.png")


@dataclass(frozen=True)
class SeedPairResult:
    """Per stage: linear CKA of each pair of seeds of the arm, of the same pairs' random
    initialisations, the paired difference and its verdict (the last stage carries the claim)."""

    arm: str
    pairs: tuple[tuple[int, int], ...]
    trained: dict[str, tuple[float, ...]]  # stage -> CKA per pair
    initial: dict[str, tuple[float, ...]]
    claims: dict[str, object]  # stage -> orchestrator.study.ClaimResult
    n_images: int
    images: str


def study_runs(client, reference: str, arm: str):
    """The study behind `reference` (sweep name or parent run id), and per seed the run id
    of `arm`'s trained trial and of its random-init row; the rows for its learning gate."""
    from orchestrator.config import ConfigError
    from orchestrator.study import RANDOM_INIT, TAG_STUDY, Study, arm_label, arm_of, find_parent, study_rows
    from orchestrator.tracking.keys import TAG_PARENT

    parent = find_parent(client, reference)
    text = parent.data.tags.get(TAG_STUDY)
    if not text:
        raise ConfigError(f"run {parent.info.run_id} ({parent.info.run_name}) has no {TAG_STUDY} tag: "
                          "not a study (run the sweep with --study)")
    study = Study.from_json(text)
    arm = arm_label(arm)
    if arm not in study.arms:
        raise ConfigError(f"arm {arm!r} is not one of the study's arms ({', '.join(study.arms)})")
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`{TAG_PARENT}` = '{parent.info.run_id}'", max_results=10000)
    rows = study_rows(children, study)
    trained, initial = {}, {}
    for row in rows:
        if row["status"] != "FINISHED" or row.get("seed") is None:
            continue
        label, seed = arm_of(row, study), int(row["seed"])
        if label == arm:
            trained[seed] = row["run_id"]
        elif label == RANDOM_INIT and arm_label(row.get(study.knob)) == arm:
            initial[seed] = row["run_id"]
    seeds = sorted(set(trained) & set(initial))
    if len(seeds) < 2:
        raise ConfigError(f"study {parent.info.run_name}: arm {arm} has {len(seeds)} seed(s) with both a finished "
                          "trial and a finished random-init row; a seed pair needs two")
    runs = {run.info.run_id: run for run in children}
    return parent, study, rows, {s: runs[trained[s]] for s in seeds}, {s: runs[initial[s]] for s in seeds}


def seed_pair_similarity(reference: str, arm: str, tracking_uri: str, images_root: str = "",
                         max_images: int = DEFAULT_MAX_IMAGES, batch_size: int = 64) -> SeedPairResult:
    """Neyshabur et al. 2020 (Sec. 3.3): two networks trained from different seeds are more
    alike after pretraining than at initialisation. For every pair of the study's seeds,
    linear CKA of the two trained backbones, stage by stage, against that of the same two
    seeds' random initialisations; the paired difference over the pairs (a 95% t-interval)
    and a verdict at the last stage, read only where the arm passed the study's learning
    gate. Logged on the study's parent run (SEED_PAIR_FILES)."""
    from itertools import combinations

    from mlflow.tracking import MlflowClient

    from orchestrator.study import (
        RANDOM_INIT,
        Claim,
        ClaimResult,
        arm_label,
        learning_gate,
        paired_difference,
        verdict_of,
    )
    from trainables.features import TRUNK_STAGES
    from trainables.similarity import cka_matrix

    client = MlflowClient(tracking_uri)
    arm = arm_label(arm)
    parent, study, rows, trained, initial = study_runs(client, reference, arm)
    first = next(iter(trained.values()))
    image_size = int(first.data.params.get("image_size", DEFAULT_IMAGE_SIZE))
    images_root = images_root or probe_images(first)
    images, kept = load_images(image_paths(images_root, max_images), image_size)
    log.info("seed pairs of %s: %d seeds, %d images of %s", arm, len(trained), len(kept), images_root)
    grams, _ = run_grams(trained.values(), images, batch_size)
    grams |= run_grams(initial.values(), images, batch_size, initial_weights_checkpoint)[0]

    stages = list(TRUNK_STAGES)
    pairs = tuple(combinations(sorted(trained), 2))

    def pair_cka(runs) -> dict[str, tuple[float, ...]]:
        diagonals = [np.diag(cka_matrix([grams[runs[i].info.run_id][s] for s in stages],
                                        [grams[runs[j].info.run_id][s] for s in stages])) for i, j in pairs]
        return {stage: tuple(float(d[k]) for d in diagonals) for k, stage in enumerate(stages)}

    trained_cka, initial_cka = pair_cka(trained), pair_cka(initial)
    gate = learning_gate(rows, study)
    claims = {}
    for stage in stages:
        claim = Claim(f"two {arm} seeds closer than two random inits at {stage}", f"cka/{stage}", arm,
                      f"{RANDOM_INIT}@{arm}")
        # Pairs are keyed by their index: paired_difference pairs the two arms' values of a pair.
        difference = paired_difference(dict(enumerate(trained_cka[stage])), dict(enumerate(initial_cka[stage])))
        claims[stage] = ClaimResult(claim, difference, *verdict_of(claim, difference, gate))
    result = SeedPairResult(arm, pairs, trained_cka, initial_cka, claims, len(kept), images_root)
    log_seed_pairs(client, parent.info.run_id, result)
    return result


def probe_images(run) -> str:
    """The validation split of the probe set a trial was scored on (its data.probe.* params)."""
    from orchestrator.config import parse_overrides, preset

    keys = [k for k in run.data.params if k.startswith("data.probe") or k in ("image_size", "data_cache")]
    trial = preset("default").override(parse_overrides([f"{k}={run.data.params[k]}" for k in sorted(keys)]))
    return str(Path(trial.root("probe")) / "val")


def seed_pair_markdown(result: SeedPairResult) -> str:
    stages = list(result.trained)
    last = stages[-1]
    lines = [f"# Feature similarity of {result.arm}'s seeds (Neyshabur et al. 2020, Sec. 3.3)", "",
             f"Linear CKA of two seeds' backbones, stage by stage, on {result.n_images} images of "
             f"`{result.images}`: the trained pair against the same seeds' random initialisations. "
             f"Seed pairs {', '.join(f'({i}, {j})' for i, j in result.pairs)}; a seed is in more than one "
             "pair, so the pairs are not independent and the interval is narrower than independent "
             f"pairs would give. The verdict is read at `{last}`; the other stages are reported.", "",
             "| stage | trained pairs, mean | random-init pairs, mean | difference [95% CI] | verdict |",
             "|---|---|---|---|---|"]
    for stage in stages:
        claim = result.claims[stage]
        interval = claim.difference.interval
        ci = (f"{interval.mean:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]" if interval.half_width is not None
              else f"{interval.mean:+.3f}")
        verdict = claim.verdict if stage == last else "(reported)"
        lines.append(f"| {stage} | {np.mean(result.trained[stage]):.3f} | {np.mean(result.initial[stage]):.3f} | "
                     f"{ci} | {verdict} |")
    lines += ["", f"Verdict at {last}: **{result.claims[last].verdict}**: {result.claims[last].reason}."]
    return "\n".join(lines) + "\n"


def seed_pair_figure(result: SeedPairResult):
    from matplotlib.figure import Figure

    stages = list(result.trained)
    figure = Figure(figsize=(1.5 + 0.9 * len(stages), 3.6), layout="constrained")
    axes = figure.add_subplot()
    x = np.arange(len(stages))
    for offset, values, label in ((-0.18, result.trained, f"{result.arm}: trained pairs"),
                                  (0.18, result.initial, "their random inits")):
        means = [np.mean(values[s]) for s in stages]
        axes.bar(x + offset, means, width=0.36, label=label)
        for k, stage in enumerate(stages):
            axes.plot([x[k] + offset] * len(values[stage]), values[stage], "k.", markersize=4)
    axes.set_xticks(x, stages)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("linear CKA between two seeds")
    axes.legend(fontsize="small")
    axes.set_title(f"{result.arm}: seed pairs {', '.join(map(str, result.pairs))}", fontsize="medium")
    return figure


def log_seed_pairs(client, parent_run_id: str, result: SeedPairResult) -> None:
    import pandas as pd

    md, csv, png = (name.format(arm=result.arm) for name in SEED_PAIR_FILES)
    client.log_text(parent_run_id, seed_pair_markdown(result), md)
    frame = pd.DataFrame([{"stage": stage, "pair": f"{i}-{j}", "trained_cka": t, "random_init_cka": r}
                          for stage in result.trained
                          for (i, j), t, r in zip(result.pairs, result.trained[stage], result.initial[stage])])
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    client.log_text(parent_run_id, buffer.getvalue(), csv)
    client.log_figure(parent_run_id, seed_pair_figure(result), png)


def main(argv: list[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException

    from orchestrator.config import ConfigError
    from orchestrator.tracking.store import resolve_tracking_uri
    from trainables.features import TRUNK_STAGES
    from trainables.weights import CheckpointFormatError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("run_ids", nargs="*", metavar="RUN_ID",
                        help="MLflow runs holding a backbone checkpoint (two or more)")
    parser.add_argument("--study", default="", metavar="SWEEP_NAME_OR_PARENT_RUN_ID",
                        help="instead of runs: a study's seed pairs of --arm against their random inits, "
                             "with a verdict logged on the study's parent run")
    parser.add_argument("--arm", default="", help="with --study: the arm whose seeds are compared")
    parser.add_argument("--tracking-uri", default="",
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--images", default="",
                        help="folder of images to compare on (default: the default probe set's val split; "
                             "with --study, the study's own probe set)")
    parser.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES,
                        help="at most this many images (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=0,
                        help="image side in pixels (default: the first run's image_size)")
    args = parser.parse_args(argv)
    if bool(args.study) == bool(args.run_ids) or bool(args.study) != bool(args.arm):
        parser.error("give two or more RUN_IDs, or --study and --arm")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        if args.study:
            result = seed_pair_similarity(args.study, args.arm, uri, args.images, args.max_images)
            print(seed_pair_markdown(result))
            return 0
        run_id, matrices = feature_similarity(args.run_ids, uri, args.images, args.max_images, args.image_size)
    except (ValueError, FileNotFoundError, RunCheckpointError, CheckpointFormatError, MlflowException,
            ConfigError) as err:
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
