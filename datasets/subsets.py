"""Nested, fixed subsets of a set (Cole et al. 2022, Sec. 3, "Fixed-size subsets").

Cole et al. control pretraining-set size with subsets that are *nested* (the 500k images
include the 250k) and *static across experiments* (ImageNet (500k) is always the same
images). Both hold when every size keeps a prefix of one permutation of the set, drawn from
a seed of its own (never the trial's): a larger fraction keeps a longer prefix of the same
order. The same rule, per class, gives the nested labelled subsets of a label-efficiency
curve (`nested_per_class`).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def fraction_problem(name: str, fraction: float) -> str | None:
    """Why `fraction` is not a subset fraction in (0, 1], or None."""
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        return f"{name}={fraction} must be in (0, 1] (1 = the whole set)"
    return None


def subset_size(n: int, fraction: float) -> int:
    """ceil(fraction x n), with `fraction` read as the decimal it is written as (0.3 x 10 is
    3, not the 4 that float rounding gives)."""
    return math.ceil(Fraction(repr(float(fraction))) * n)


def fixed_permutation(n: int, seed: int, *stream: int) -> np.ndarray:
    """The one order of range(n) that every subset drawn with `seed` (and `stream`, e.g. a
    class's position) is a prefix of."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(n), *map(int, stream)])).permutation(n)


def nested_subset(n: int, fraction: float, seed: int) -> np.ndarray:
    """The indices (ascending) of the first ceil(fraction x n) items of `fixed_permutation(n, seed)`."""
    if (problem := fraction_problem("fraction", fraction)) is not None:
        raise ValueError(problem)
    return np.sort(fixed_permutation(n, seed)[:subset_size(n, fraction)])


def evenly_spaced(n: int, count: int) -> list[int]:
    """`count` positions of range(n), evenly spaced from 0 (all of them when count is 0 or
    at least n): how a set is cut to another set's size without favouring any stretch of it."""
    if count <= 0 or count >= n:
        return list(range(n))
    step = n / count
    return [int(k * step) for k in range(count)]


def nested_per_class(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """The indices (ascending) of `per_class` items of each class of `labels`: the first of
    one fixed permutation of that class's items, so a smaller count keeps a subset of a
    larger one's. A class with fewer items is a ValueError naming it."""
    labels = np.asarray(labels)
    keep = []
    for position, cls in enumerate(np.unique(labels)):
        members = np.flatnonzero(labels == cls)
        if len(members) < per_class:
            raise ValueError(f"class {cls} has {len(members)} labelled items, fewer than {per_class} per class")
        keep.append(members[fixed_permutation(len(members), seed, position)[:per_class]])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=int)
