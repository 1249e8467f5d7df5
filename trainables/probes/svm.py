"""The VOC07 SVM probe protocols: one linear SVM per class on frozen features, scored by AP.

Paper Table 2 follows Goyal et al. 2019 ("Scaling and Benchmarking Self-Supervised Visual
Representation Learning"): a one-vs-rest linear SVM per class, trained on ``trainval``
features with its cost chosen by cross-validation over a grid, scored on ``test`` by
average precision; the mean over classes is the mAP. Labels are those of
``ImageSets/Main/<class>_<split>.txt``: 1 (present), -1 (absent), 0 (only difficult
instances). Two named protocols (``PROTOCOLS``):

``goyal2019``, the cited benchmark, as its code does it (read, not copied:
facebookresearch/fair_self_supervision_benchmark ``tools/svm/train_svm_kfold.py``,
``tools/svm/test_svm.py``, ``tools/svm/svm_helper.py``,
``extra_scripts/create_voc_data_files.py``,
``configs/benchmark_tasks/image_classification/voc07/resnet50_*_extract_features.yaml``,
``self_supervision_benchmark/data/data_input.py``; the same recipe in
facebookresearch/vissl ``vissl/utils/svm_utils/svm_trainer.py``):

- features: each row divided by its L2 norm (+ 1e-5), train and test alike;
- ``LinearSVC(class_weight={1: 2, -1: 1})``, squared hinge, L2 penalty, dual, tol 1e-4,
  2,000 iterations;
- costs: 1e-7, 1e-6, ..., 10, 100 and 2^-4, ..., 2^-19 (the README's grid plus the
  powers of 0.5 that ``svm_helper.parse_cost_list`` always adds: 26 costs);
- cost per class: the best mean of sklearn's ``average_precision`` over 3-fold
  cross-validation (``cross_val_score(cv=3)``: stratified, unshuffled folds), the first
  best in grid order; the SVM is then refitted on all of ``trainval``;
- difficult (label 0): a negative in training, ignored in the test AP;
- AP: the area under the precision envelope (precision made non-increasing in recall,
  summed over the recall steps: ``svm_helper.calculate_ap``), not VOC07's 11-point AP;
- input: the whole image resized to 224 x 224 (shorter side to 256, then both sides to
  224, aspect ratio not kept: ``scale`` + ``global_resize``), no centre crop;
- ResNet-50 feature: res5 average-pooled with a 6 x 6 window at stride 1 (7 x 7 -> 2 x 2
  x 2,048 = 8,192 dims, ``res5_2_branch2c_bn_s1k6_resize``). Here: the scored layer
  ``layer4_2x2`` (``trainables.models``) when the trial scores ``pool``; see there for
  what it is on other backbones and image sizes.
  (VISSL's ResNet config ``eval_resnet_8gpu_transfer_voc07_svm.yaml`` uses another grid,
  0.01 ... 1,000 in 11 steps; we follow the original benchmark's.)

``fast``, this project's earlier protocol, kept for quick sweeps (the demo). Its
departures from ``goyal2019``: features standardised (``StandardScaler`` fitted on
``trainval``) instead of L2-normalised rows; ``class_weight="balanced"`` instead of
{1: 2, -1: 1}; 4 costs (0.01, 0.1, 1, 10) instead of 26; shuffled stratified folds;
difficult images left out of training instead of counted as negatives; VOC07's 11-point
AP instead of the area AP; the trial's shared evaluation view (shorter side resized, then
the centre square: it cuts the sides of a 500 x 375 VOC image) and layer (the globally
pooled output) instead of the whole image and the 2 x 2 pooled layer4.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

# k / 10, not linspace: linspace's 0.30000000000000004 would miss a recall of exactly 3/10
# (a correctly rounded k/n equal to 0.3 is the double 3/10).
ELEVEN_RECALLS = np.arange(11) / 10


@dataclass(frozen=True)
class SvmProtocol:
    """One VOC07 SVM protocol's choices (see the module docstring)."""

    name: str
    normalise: str  # "l2": each row over its norm; "standardise": StandardScaler on trainval
    class_weight: Any  # LinearSVC's class_weight
    costs: tuple[float, ...]  # the grid, in the order ties are broken (first best wins)
    shuffle_folds: bool  # StratifiedKFold(shuffle=...)
    difficult_in_training: str  # "negative" or "ignored" (label 0); always ignored in the test AP
    eleven_point: bool  # the test AP: VOC07's 11-point, else the area under the precision envelope
    whole_image: bool  # the evaluation view: the whole image resized, else the shared centre crop
    pooled_layer4: bool  # the trial's "pool" scored as layer4_2x2 (Goyal's res5 s1k6 pooling)


GOYAL2019_COSTS = tuple(10.0 ** p for p in range(-7, 3)) + tuple(0.5 ** p for p in range(4, 20))

PROTOCOLS = {
    "goyal2019": SvmProtocol("goyal2019", "l2", {1: 2, -1: 1}, GOYAL2019_COSTS, shuffle_folds=False,
                             difficult_in_training="negative", eleven_point=False, whole_image=True,
                             pooled_layer4=True),
    "fast": SvmProtocol("fast", "standardise", "balanced", (0.01, 0.1, 1.0, 10.0), shuffle_folds=True,
                        difficult_in_training="ignored", eleven_point=True, whole_image=False,
                        pooled_layer4=False),
}


def protocol_of(protocol: str | SvmProtocol) -> SvmProtocol:
    if isinstance(protocol, SvmProtocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise ValueError(f"protocol={protocol!r} is not one of {', '.join(PROTOCOLS)}") from None


def voc07_average_precision(scores, labels, eleven_point: bool = True) -> float:
    """Average precision (percent) of `scores` for binary `labels` in {1, -1, 0}.

    0 marks an example to ignore (VOC's "difficult only"). Examples with equal scores
    form one threshold (the result does not depend on their input order). Returns NaN
    when no example is positive (AP is undefined; a mean over classes should skip it).

    ``eleven_point=True``: VOC 2007's AP, the mean over recall levels t in {0, 0.1, ..., 1}
    of the highest precision at recall >= t (0 if none). ``eleven_point=False``: the area
    AP of VOC 2010 and later (and of Goyal et al.'s SVM benchmark): precision made
    non-increasing in recall (the maximum to its right), summed over the recall steps.
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape[0]} and {labels.shape[0]}")
    if not np.isin(labels, (1, -1, 0)).all():
        raise ValueError(f"labels must be 1, -1 or 0 (ignored), got {sorted(set(labels.tolist()) - {1, -1, 0})}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    keep = labels != 0
    scores, positive = scores[keep], labels[keep] == 1
    n_positive = int(positive.sum())
    if n_positive == 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    true_pos = np.cumsum(positive)
    false_pos = np.cumsum(~positive)
    # One operating point per distinct score: the last example of each tie group.
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    recall = true_pos[last] / n_positive
    precision = true_pos[last] / (true_pos[last] + false_pos[last])
    if eleven_point:
        best = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in ELEVEN_RECALLS]
        return float(100.0 * np.mean(best))
    recall = np.r_[0.0, recall, 1.0]
    precision = np.r_[0.0, precision, 0.0]
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(100.0 * np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def parse_costs(text: str, protocol: str | SvmProtocol = "goyal2019") -> tuple[float, ...]:
    """``"0.01,0.1,1"`` as positive floats (a config string: parts hold plain values); empty:
    the protocol's own grid."""
    if not str(text).strip():
        return protocol_of(protocol).costs
    try:
        costs = tuple(float(c) for c in str(text).split(",") if c.strip())
    except ValueError:
        raise ValueError(f"costs={text!r} must be comma-separated numbers") from None
    if not costs or min(costs) <= 0:
        raise ValueError(f"costs={text!r} must list at least one positive cost")
    return costs


def svm_problems(costs: str, cv_folds: int, max_iter: int, n_jobs: int = 1, protocol: str = "goyal2019") -> list[str]:
    """The SVM protocol's settings checks, shared by the probes that use it."""
    out = [] if n_jobs == -1 or n_jobs >= 1 else [f"n_jobs={n_jobs} must be at least 1, or -1 for every core"]
    if protocol not in PROTOCOLS:
        out.append(f"protocol={protocol!r} is not one of {', '.join(PROTOCOLS)}")
    try:
        parse_costs(costs)
    except ValueError as err:
        out.append(str(err))
    if cv_folds < 2:
        out.append(f"cv_folds={cv_folds} must be at least 2")
    if max_iter < 1:
        out.append(f"max_iter={max_iter} must be at least 1")
    return out


def l2_normalise_rows(x: np.ndarray) -> np.ndarray:
    """Each row over its L2 norm plus 1e-5 (Goyal et al.'s ``normalize_features``: the 1e-5
    keeps an all-zero row finite; sklearn's ``normalize`` has no such term)."""
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-5)


def fit_class_svm(x: np.ndarray, y: np.ndarray, costs: tuple[float, ...], cv_folds: int, seed: int,
                  max_iter: int, protocol: str | SvmProtocol = "goyal2019") -> LinearSVC | None:
    """One class's linear SVM (`y` in {1, -1}), cost chosen by `cv_folds`-fold CV on AP.

    None when the class has too few positives or negatives to train on (fewer than 2).
    """
    spec = protocol_of(protocol)
    n_pos, n_neg = int((y == 1).sum()), int((y == -1).sum())
    if min(n_pos, n_neg) < 2:
        return None
    # dual=True: liblinear's dual coordinate descent (as Goyal et al.). scikit-learn's "auto"
    # picks the primal solver when rows outnumber dimensions, which was 4-20x slower on these
    # features and stopped at max_iter without converging at C >= 0.1 (BENCHMARKS.md,
    # "VOC07 SVM solver"). tol 1e-4 and the squared hinge are LinearSVC's defaults and theirs.
    svm = LinearSVC(class_weight=spec.class_weight, dual=True, max_iter=max_iter, random_state=seed)
    folds = min(cv_folds, n_pos, n_neg)  # a fold needs a positive and a negative (tiny sets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(costs) == 1:
            return svm.set_params(C=costs[0]).fit(x, y)
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed) if spec.shuffle_folds else StratifiedKFold(folds)
        # GridSearchCV keeps the grid's order and takes the first of equal mean scores (rank
        # "min"), as Goyal et al.'s argmax over their cost list; refit=True fits all rows.
        search = GridSearchCV(svm, {"C": list(costs)}, scoring="average_precision", cv=cv, refit=True)
        return search.fit(x, y).best_estimator_


def training_labels(labels: np.ndarray, protocol: str | SvmProtocol) -> np.ndarray:
    """One class's training labels in {1, -1, 0 = left out}: difficult (0) made a negative
    under ``goyal2019``, left out under ``fast``."""
    labels = np.asarray(labels)
    if protocol_of(protocol).difficult_in_training == "negative":
        return np.where(labels == 0, -1, labels)
    return labels


def _class_scores(train_x: np.ndarray, labels: np.ndarray, test_x: np.ndarray, costs: tuple[float, ...],
                  cv_folds: int, seed: int, max_iter: int, protocol: SvmProtocol) -> np.ndarray | None:
    """One class's decision values on the test rows (None: the class cannot be trained)."""
    labels = training_labels(labels, protocol)
    known = labels != 0
    svm = fit_class_svm(train_x[known], labels[known], costs, cv_folds, seed, max_iter, protocol)
    return None if svm is None else svm.decision_function(test_x)


def prepare_features(train_x: np.ndarray, test_x: np.ndarray, protocol: str | SvmProtocol) -> tuple[np.ndarray, np.ndarray]:
    """The protocol's feature normalisation of both splits (standardising uses trainval's statistics only)."""
    if protocol_of(protocol).normalise == "l2":
        return l2_normalise_rows(train_x), l2_normalise_rows(test_x)
    scaler = StandardScaler().fit(train_x)
    return scaler.transform(train_x), scaler.transform(test_x)


def svm_scores(train_x: np.ndarray, train_labels: np.ndarray, test_x: np.ndarray,
               costs: tuple[float, ...] | None = None, cv_folds: int = 3, seed: int = 0,
               max_iter: int = 2000, n_jobs: int = 1, protocol: str | SvmProtocol = "goyal2019") -> np.ndarray:
    """Each class's SVM decision value on every test row (N_test x C; a NaN column for a class
    with fewer than 2 training positives or negatives).

    `train_labels` is N x C in {1, -1, 0}; what 0 means in training is the protocol's.
    `costs` None: the protocol's grid. The classes are fitted in `n_jobs` processes (-1:
    one per core); the result does not depend on `n_jobs`.
    """
    spec = protocol_of(protocol)
    costs = spec.costs if costs is None else tuple(costs)
    train_x, test_x = np.asarray(train_x, np.float32), np.asarray(test_x, np.float32)
    train_labels = np.asarray(train_labels)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be N x d with the same d, got {train_x.shape} and {test_x.shape}")
    if train_labels.ndim != 2 or len(train_labels) != len(train_x):
        raise ValueError(f"labels must be N x C, got {train_labels.shape} for {len(train_x)} feature rows")
    train_x, test_x = prepare_features(train_x, test_x, spec)
    # Processes, not threads: liblinear draws its coordinate order from one process-wide
    # generator, so threads would interleave their draws and change the result from run
    # to run. joblib memory-maps the feature arrays into the workers instead of copying.
    columns = Parallel(n_jobs=n_jobs, prefer="processes")(
        delayed(_class_scores)(train_x, train_labels[:, c], test_x, costs, cv_folds, seed, max_iter, spec)
        for c in range(train_labels.shape[1]))
    scores = np.full((len(test_x), train_labels.shape[1]), np.nan)
    for c, column in enumerate(columns):
        if column is not None:
            scores[:, c] = column
    return scores


def mean_ap(scores: np.ndarray, labels: np.ndarray, eleven_point: bool = True) -> tuple[float, np.ndarray]:
    """mAP (percent) over the classes that can be scored, and the per-class APs (NaN: not
    scored: no SVM, or no test positive). Difficult (0) test labels are ignored."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be N x C")
    aps = np.array([np.nan if np.isnan(scores[:, c]).any()
                    else voc07_average_precision(scores[:, c], labels[:, c], eleven_point)
                    for c in range(labels.shape[1])])
    if np.isnan(aps).all():
        raise ValueError("no class could be scored: each needs 2 training positives and negatives and a test positive")
    return float(np.nanmean(aps)), aps


def svm_map(train_x: np.ndarray, train_labels: np.ndarray, test_x: np.ndarray, test_labels: np.ndarray,
            costs: tuple[float, ...] | None = None, cv_folds: int = 3, seed: int = 0,
            max_iter: int = 2000, n_jobs: int = 1, protocol: str | SvmProtocol = "goyal2019") -> tuple[float, np.ndarray]:
    """A VOC07 SVM protocol: mAP (percent) and the per-class APs (NaN: class not scored)."""
    spec = protocol_of(protocol)
    test_labels = np.asarray(test_labels)
    if test_labels.shape != (len(test_x), np.shape(train_labels)[-1]):
        raise ValueError(f"labels must be N x C for the same C, got {np.shape(train_labels)} and {test_labels.shape} "
                         f"for {len(train_x)} and {len(test_x)} feature rows")
    scores = svm_scores(train_x, train_labels, test_x, costs, cv_folds, seed, max_iter, n_jobs, spec)
    return mean_ap(scores, test_labels, spec.eleven_point)
