"""A trial's evaluation of a frozen backbone: Top-K RIS on every invariance set it names
and every probe it names, from one feature-extraction path.

In a sweep it is a stage of its own (`evaluate_checkpoint`), run by the trial function
after the Train run, on the last checkpoint, with features from the cached Ray Data path;
`evaluate` also runs in process on any backbone (baselines, tests).

Produces the metrics named in ../shared/DESIGN.md: ``ris/<invariance>/top10`` and
``ris/<invariance>/top25`` for each of the trial's ``invariances`` with
``data/ris_targets/<invariance>`` (the targets it was scored over: RIS is comparable only
at equal counts, since each target's share P(y) sets its firing threshold), each probe's
``probe/*`` keys, and ``data/skipped_images`` (images that failed to decode here). It
knows no invariance set or probe by name.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datasets.cache import using_data_cache
from trainables.augment import eval_transform
from trainables.config import TrialConfig
from trainables.features import FeatureExtractor
from trainables.invariance import representation_invariance_score
from trainables.models import scored_layer

RIS_TOP_K = (10, 25)


def evaluate(backbone: nn.Module | None, trial: TrialConfig, device: torch.device | str,
             features=None) -> dict[str, float]:
    """All evaluation metrics of `backbone` (image -> pooled features), frozen, scored at
    `trial.eval_layer` (the pooled output by default, as the paper).

    `features` replaces the in-process extraction (`FeatureExtractor` of `backbone`),
    e.g. by the cached Ray Data path (`RayDataFeatures`) of the score command.
    """
    if features is None:
        features = FeatureExtractor(scored_layer(backbone, trial.eval_layer), device, trial.eval_batch_size,
                                    eval_transform(trial.image_size), trunk=backbone, image_size=trial.image_size,
                                    layer=trial.eval_layer)
    metrics: dict[str, float] = {}
    sets = [(invariance, read_evaluation_data(invariance, trial)) for invariance in trial.invariances]
    if hasattr(features, "prefetch"):  # one extraction run for all the sets
        features.prefetch([data.paths for _, data in sets])
    for invariance, data in sets:
        x, index = features(data.paths)
        # `index` holds the positions of the images that decoded: keep their annotations.
        scores = representation_invariance_score(x, data.targets[index], data.trajectories[index],
                                                 top_k=RIS_TOP_K, sign=trial.ris_sign,
                                                 local_rate=trial.ris_local_rate, weighting=trial.ris_weighting)
        for k in RIS_TOP_K:
            metrics[f"ris/{invariance.name}/top{k}"] = scores[k]
        metrics[f"data/ris_targets/{invariance.name}"] = len(np.unique(data.targets[index]))
    for probe in trial.probes:
        with using_data_cache(trial.data_cache):  # a probe's own crops (voc07_boxes) too
            metrics.update(probe.evaluate(trial.root_of(probe), features, trial))
    metrics["data/skipped_images"] = features.skipped
    return metrics


def read_evaluation_data(part, trial: TrialConfig):
    """What the evaluation reads for one of the trial's invariance sets or probes, parsed
    and checked: the set's trajectories (`InvarianceSetPart.trajectories`), or the probe's
    annotations (`Probe.read`). A malformed file raises `DatasetFormatError` naming it.
    `evaluate` starts from it, and the sweep's prepare stage calls it before any trial
    (`orchestrator.sweep.prepare_data`), so a bad annotation is refused before training."""
    from datasets.invariance_sets import InvarianceSetPart

    with using_data_cache(trial.data_cache):  # crops of a real root go to the trial's cache
        if isinstance(part, InvarianceSetPart):
            return part.trajectories(trial.root_of(part), trial.ris_max_objects)
        return part.read(trial.root_of(part), trial)


@dataclass(frozen=True)
class TrainedBackbone:
    """A trained method's backbone as the feature actors build it (`RayDataFeatures`)."""

    module: nn.Module
    arch: str
    digest: str  # of the checkpoint file: the features' cache key

    def build(self) -> nn.Module:
        return self.module.eval()


def load_backbone(trial: TrialConfig, checkpoint_file: Path | str) -> nn.Module:
    """The backbone of `trial`'s method with a checkpoint's weights, in eval mode, on the CPU
    (the method rebuilds its model and hands over its `backbone`)."""
    model = trial.method.build_model(trial)
    state = torch.load(checkpoint_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return trial.method.backbone(model).eval()


def load_trained_backbone(trial: TrialConfig, checkpoint_file: Path | str) -> TrainedBackbone:
    """`load_backbone`, with the checkpoint's digest as its features' cache key."""
    digest = hashlib.sha256(Path(checkpoint_file).read_bytes()).hexdigest()[:16]
    return TrainedBackbone(load_backbone(trial, checkpoint_file), trial.arch, digest)


def evaluate_checkpoint(trial: TrialConfig, checkpoint_file: Path | str) -> dict[str, float]:
    """The evaluation stage: every metric of the checkpoint's backbone, features by Ray Data."""
    from trainables.features import RayDataFeatures

    backbone = load_trained_backbone(trial, checkpoint_file)
    features = RayDataFeatures(backbone, trial.image_size, trial.eval_batch_size, cache=trial.data_cache,
                               use_gpu=trial.use_gpu, layer=trial.eval_layer)
    return evaluate(None, trial, "cuda" if trial.use_gpu else "cpu", features=features)
