"""The instrument on generated sets, with representations built from the ground truth.

Each crop of a set is traced back (``InvarianceSet.sources``) to the annotation it was cut
from, and a representation is made of random functions of the latent factors read there
(category, viewpoint bin, object identity; sequence, cover level), not of pixels: fast
and exact. Under Eq. 2 the local firing rate ``L_y(i)`` is unit ``i``'s firing fraction
over the samples of target ``y``, so a representation scores high on a set when it is
invariant to what varies within that set's targets and tells the targets apart. The
margins below therefore come from what the targets hold (PASCAL3D+ ``instance``:
(category, viewpoint bin); ``instance_viewpoint``: category; GOT-10k ``occlusion``:
sequence): with category targets for both PASCAL3D+ sets, Eq. 2 would score them equally.
They hold under either local-rate reading (``local_rate``): Eq. 2, and Goodfellow et
al.'s rate conditioned on the reference firing.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from datasets.got10k import COVER_UPPER_BOUNDS, MAX_COVER_LEVEL, read_occlusion
from datasets.pascal3d import read_annotation, read_instance_set, viewpoint_bin
from datasets.synthetic.got10k import ensure_synthetic_got10k
from datasets.synthetic.pascal3d import ensure_synthetic_pascal3d
from trainables.invariance import representation_invariance_score

# Enough random units that every target has well over 25 that single it out, so RIS@25
# of a representation that is exactly invariant and discriminative is near 100.
UNITS = 512
TOP_K = (10, 25)
LOCAL_RATES = ("eq2", "reference")


def ris(features, data, **options) -> dict[int, float]:
    """RIS@10 and @25 under the default settings, or under ``options`` (local_rate, weighting)."""
    return representation_invariance_score(features, data.targets, data.trajectories, TOP_K, **options)


def random_function(keys: list, seed: int) -> np.ndarray:
    """``len(keys) x UNITS``: one Gaussian code per distinct key, so samples with equal keys get equal rows."""
    rng = np.random.default_rng(seed)
    codes = {key: rng.normal(size=UNITS) for key in sorted(set(keys))}
    return np.stack([codes[key] for key in keys])


def noise(count: int, scale: float, seed: int) -> np.ndarray:
    return scale * np.random.default_rng(seed).normal(size=(count, UNITS))


# ----------------------------------------------------------------------------- PASCAL3D+


@pytest.fixture(scope="module")
def pascal3d(data_cache):
    """Both sets of a generated PASCAL3D+ (4 categories x 8 azimuths x 3 instances, each
    image a new instance), and per sample its (category, viewpoint bin) read from its .mat."""
    root = ensure_synthetic_pascal3d(num_categories=4, azimuths=8, instances_per_view=3, truncated_per_category=0,
                                     image_size=32, cache=str(data_cache), processes=1)
    sets = {factor: read_instance_set(root, factor) for factor in ("instance", "instance_viewpoint")}
    latent = {}
    for source in sets["instance_viewpoint"].sources:
        annotation, index = source.rsplit("#", 1)
        annotation = Path(annotation)
        obj = read_annotation(annotation, root / "Images" / annotation.parent.name)[int(index)]
        latent[source] = (obj.category, viewpoint_bin(obj.azimuth, obj.elevation))
    assert sorted(sets["instance"].sources) == sorted(latent) and len(latent) == 4 * 8 * 3
    return sets, latent


def test_pascal3d_targets_vary_only_in_their_factor(pascal3d):
    sets, latent = pascal3d
    instance, view = sets["instance"], sets["instance_viewpoint"]
    # instance: each target is one (category, viewpoint bin), its objects distinct instances.
    for y in np.unique(instance.targets):
        members = [latent[s] for s, t in zip(instance.sources, instance.targets) if t == y]
        assert len(set(members)) == 1 and len(members) == 3
    assert len(np.unique(instance.targets)) == 4 * 8
    # instance_viewpoint: each target is one category; a trajectory holds each bin once.
    for y in np.unique(view.targets):
        assert len({latent[s][0] for s, t in zip(view.sources, view.targets) if t == y}) == 1
    for j in np.unique(view.trajectories):
        bins = [latent[s][1] for s, t in zip(view.sources, view.trajectories) if t == j]
        assert len(bins) == len(set(bins)) == 8
    assert len(np.unique(view.targets)) == 4


def _scores(sets, latent, features_of, local_rate: str) -> dict[str, dict[int, float]]:
    """RIS of one representation (a row per source) on both sets: the same samples, grouped two ways."""
    sources = sorted(latent)
    row = dict(zip(sources, features_of(sources)))
    return {factor: ris(np.stack([row[s] for s in data.sources]), data, local_rate=local_rate)
            for factor, data in sets.items()}


@pytest.mark.parametrize("local_rate", LOCAL_RATES)
def test_seeing_the_viewpoint_but_not_the_instance_scores_higher_on_instance(pascal3d, local_rate):
    """Units that are functions of (category, viewpoint bin) alone: invariant to the
    instance, not to the viewpoint. Measured: instance 100.0 / 97.3, instance_viewpoint
    59.4 / 55.2 (top-10 / top-25); with category targets for both sets, 59.4 / 55.2 on each."""
    sets, latent = pascal3d
    scores = _scores(sets, latent, lambda sources: random_function([latent[s] for s in sources], 0)
                     + noise(len(sources), 0.05, 1), local_rate)
    print("units of (category, viewpoint bin):", scores)
    for k in TOP_K:
        assert scores["instance"][k] > 95 and scores["instance"][k] > scores["instance_viewpoint"][k] + 30, scores


@pytest.mark.parametrize("local_rate", LOCAL_RATES)
def test_seeing_the_instance_but_not_the_viewpoint_scores_higher_on_instance_viewpoint(pascal3d, local_rate):
    """Units that are functions of the category plus a code of each object (instance):
    invariant to the viewpoint, not to the instance. Measured: instance_viewpoint 99.8 /
    98.4, instance 53.1 / 41.5; with category targets for both sets, 99.8 / 98.4 on each."""
    sets, latent = pascal3d
    scores = _scores(sets, latent, lambda sources: random_function([latent[s][0] for s in sources], 2)
                     + 0.5 * random_function(sources, 3), local_rate)
    print("units of category + instance:", scores)
    for k in TOP_K:
        assert scores["instance_viewpoint"][k] > 95, scores
        assert scores["instance_viewpoint"][k] > scores["instance"][k] + 30, scores


# ----------------------------------------------------------------------------- GOT-10k


def visible_fraction(level: int) -> float:
    """The middle of GOT-10k's visible-ratio interval of a cover level (8: fully visible)."""
    bounds = (*COVER_UPPER_BOUNDS, 1.0)
    return 1.0 if level == MAX_COVER_LEVEL else (bounds[level - 1] + bounds[level]) / 2


def cover_levels(data) -> list[int]:
    """Each crop's cover level, read from its sequence's cover.label (line = frame number)."""
    levels = []
    for source in data.sources:
        frame = Path(source)
        lines = (frame.parent / "cover.label").read_text().split()
        levels.append(int(lines[int(frame.stem) - 1]))
    return levels


@pytest.fixture(scope="module")
def got10k(data_cache) -> Path:
    # 26 sequences: two of each of the generator's 13 object classes.
    return ensure_synthetic_got10k(num_sequences=26, frames=16, image_size=32, cache=str(data_cache), processes=1)


@pytest.mark.parametrize("local_rate", LOCAL_RATES)
def test_ignoring_the_occlusion_scores_higher_on_occlusion(got10k, local_rate):
    """Target = sequence (one object in one video): only the occlusion varies within it.
    Units of the sequence alone ignore the occlusion; units of the cover level see only
    it; units of the sequence scaled by the visible fraction tell the sequences apart but
    weaken with occlusion. Measured: 100.0 / 99.6, 24.5 / 23.7 and 61.7 / 56.7."""
    data = read_occlusion(got10k)
    sequences = [Path(s).parent.name for s in data.sources]
    levels = cover_levels(data)
    for y in np.unique(data.targets):  # each target one sequence, each of its levels once
        mine = [(q, v) for q, v, t in zip(sequences, levels, data.targets) if t == y]
        assert len({q for q, _ in mine}) == 1 and len({v for _, v in mine}) == len(mine) >= 2
    visible = np.asarray([visible_fraction(v) for v in levels])[:, None]
    count = len(data)
    scores = {
        "ignoring": ris(random_function(sequences, 4) + noise(count, 0.05, 5), data, local_rate=local_rate),
        "cover": ris(random_function(levels, 6) + noise(count, 0.05, 7), data, local_rate=local_rate),
        "scaled": ris(random_function(sequences, 8) * visible + noise(count, 0.05, 9), data, local_rate=local_rate),
    }
    print("occlusion RIS:", scores)
    for k in TOP_K:
        assert scores["ignoring"][k] > 95, scores
        assert scores["ignoring"][k] > scores["scaled"][k] + 20, scores
        assert scores["scaled"][k] > scores["cover"][k] + 20, scores


def test_one_trajectory_per_target_scores_alike_under_every_reading(pascal3d, got10k):
    """PASCAL3D+ ``instance`` and GOT-10k by sequence have one trajectory per target, so
    every reference shares it and each weighting counts its samples alike: all four
    (local_rate, weighting) give one score, even for units that fire on scattered samples
    (a code of the category or sequence under strong per-sample noise). On
    ``instance_viewpoint`` (eight trajectories per category) the same units score higher
    under the reference reading: measured 69.2 / 63.7 (eq2) against 72.9 / 68.1."""
    sets, latent = pascal3d
    sources = sorted(latent)
    row = dict(zip(sources, random_function([latent[s][0] for s in sources], 2) + noise(len(sources), 2.0, 3)))
    occlusion = read_occlusion(got10k)
    data = {**sets, "occlusion": occlusion}
    units = {name: np.stack([row[s] for s in sets[name].sources]) for name in sets}
    units["occlusion"] = (random_function([Path(s).parent.name for s in occlusion.sources], 4)
                          + noise(len(occlusion), 2.0, 5))
    readings = [(rate, weighting) for rate in LOCAL_RATES for weighting in ("sample", "trajectory")]
    scores = {name: [ris(units[name], data[name], local_rate=r, weighting=w) for r, w in readings] for name in data}
    print("by", readings, scores)
    for name in ("instance", "occlusion"):
        for score in scores[name][1:]:
            assert score == pytest.approx(scores[name][0], abs=1e-9), (name, scores[name])
    eq2, reference = scores["instance_viewpoint"][0], scores["instance_viewpoint"][2]
    for k in TOP_K:
        assert reference[k] > eq2[k] + 2, (eq2, reference)


def test_sample_and_trajectory_weighting_differ_on_object_class_targets(got10k):
    """``target=object_class``: each class holds two sequences with unequal numbers of cover
    levels, so Eq. 2 as written (each sample counts once) and a mean over trajectories
    (each sequence counts once) weigh them differently; units of the sequence fire on one
    sequence of their class and score by its share. Measured (eq2): sample 73.3 / 64.4,
    trajectory 69.6 / 58.0. The same units on the sequence targets score alike."""
    by_class = read_occlusion(got10k, target="object_class")
    sizes = Counter(zip(by_class.targets.tolist(), by_class.trajectories.tolist()))
    per_class = Counter(target for target, _ in sizes)
    assert set(per_class.values()) == {2} and any(
        len({n for (t, _), n in sizes.items() if t == y}) == 2 for y in per_class)  # unequal sizes
    units = random_function([Path(s).parent.name for s in by_class.sources], 4) + noise(len(by_class), 0.05, 5)
    sample, trajectory = (ris(units, by_class, weighting=w) for w in ("sample", "trajectory"))
    print("object_class targets, sample vs trajectory weighting:", sample, trajectory)
    for k in TOP_K:
        assert abs(sample[k] - trajectory[k]) > 2, (sample, trajectory)
