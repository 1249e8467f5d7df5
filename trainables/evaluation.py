"""A trial's evaluation of a frozen backbone: Top-K RIS on every invariance set it names
and every probe it names, from one feature-extraction path.

Produces the metrics named in ../shared/DESIGN.md: ``ris/<invariance>/top10`` and
``ris/<invariance>/top25`` for each of the trial's ``invariances`` with
``data/ris_targets/<invariance>`` (the targets it was scored over: RIS is comparable only
at equal counts, since each target's share P(y) sets its firing threshold), each probe's
``probe/*`` keys, and ``data/skipped_images`` (images that failed to decode here). It
knows no invariance set or probe by name.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainables.augment import eval_transform
from trainables.config import TrialConfig
from trainables.features import FeatureExtractor
from trainables.invariance import representation_invariance_score

RIS_TOP_K = (10, 25)


def evaluate(backbone: nn.Module | None, trial: TrialConfig, device: torch.device | str,
             features=None) -> dict[str, float]:
    """All evaluation metrics of `backbone` (image -> pooled features), frozen.

    `features` replaces the in-process extraction (`FeatureExtractor` of `backbone`),
    e.g. by the cached Ray Data path (`RayDataFeatures`) of the score command.
    """
    if features is None:
        features = FeatureExtractor(backbone, device, trial.eval_batch_size, eval_transform(trial.image_size))
    metrics: dict[str, float] = {}
    for invariance in trial.invariances:
        data = invariance.trajectories(trial.root_of(invariance), trial.ris_max_objects)
        x, index = features(data.paths)
        # `index` holds the positions of the images that decoded: keep their annotations.
        scores = representation_invariance_score(x, data.targets[index], data.trajectories[index], top_k=RIS_TOP_K)
        for k in RIS_TOP_K:
            metrics[f"ris/{invariance.name}/top{k}"] = scores[k]
        metrics[f"data/ris_targets/{invariance.name}"] = len(np.unique(data.targets[index]))
    for probe in trial.probes:
        metrics.update(probe.evaluate(trial.root_of(probe), features, trial))
    metrics["data/skipped_images"] = features.skipped
    return metrics
