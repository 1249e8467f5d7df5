"""The VOC07 SVM protocol: one linear SVM per class on frozen features, scored by AP.

Paper Table 2 (and Goyal et al. 2019's benchmark it follows): a one-vs-rest linear SVM
per class, trained on ``trainval`` features with its cost chosen by cross-validation over
a grid, scored on ``test`` with Pascal VOC 2007's 11-point interpolated average precision;
the mean over classes is the mAP. Labels are those of ``ImageSets/Main/<class>_<split>.txt``:
1 (present), -1 (absent), 0 (only difficult instances: left out of training and scoring).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

# k / 10, not linspace: linspace's 0.30000000000000004 would miss a recall of exactly 3/10
# (a correctly rounded k/n equal to 0.3 is the double 3/10).
ELEVEN_RECALLS = np.arange(11) / 10


def voc07_average_precision(scores, labels, eleven_point: bool = True) -> float:
    """Average precision (percent) of `scores` for binary `labels` in {1, -1, 0}.

    0 marks an example to ignore (VOC's "difficult only"). Examples with equal scores
    form one threshold (the result does not depend on their input order). Returns NaN
    when no example is positive (AP is undefined; a mean over classes should skip it).

    ``eleven_point=True``: VOC 2007's AP, the mean over recall levels t in {0, 0.1, ..., 1}
    of the highest precision at recall >= t (0 if none). ``eleven_point=False``: the area
    AP of VOC 2010 and later: precision made non-increasing in recall (the maximum to its
    right), summed over the recall steps.
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


def parse_costs(text: str) -> tuple[float, ...]:
    """``"0.01,0.1,1"`` as positive floats (a config string: parts hold plain values)."""
    try:
        costs = tuple(float(c) for c in str(text).split(",") if c.strip())
    except ValueError:
        raise ValueError(f"costs={text!r} must be comma-separated numbers") from None
    if not costs or min(costs) <= 0:
        raise ValueError(f"costs={text!r} must list at least one positive cost")
    return costs


def svm_problems(costs: str, cv_folds: int, max_iter: int, n_jobs: int = 1) -> list[str]:
    """The SVM protocol's settings checks, shared by the probes that use it."""
    out = [] if n_jobs == -1 or n_jobs >= 1 else [f"n_jobs={n_jobs} must be at least 1, or -1 for every core"]
    try:
        parse_costs(costs)
    except ValueError as err:
        out.append(str(err))
    if cv_folds < 2:
        out.append(f"cv_folds={cv_folds} must be at least 2")
    if max_iter < 1:
        out.append(f"max_iter={max_iter} must be at least 1")
    return out


def fit_class_svm(x: np.ndarray, y: np.ndarray, costs: tuple[float, ...], cv_folds: int, seed: int,
                  max_iter: int) -> LinearSVC | None:
    """One class's linear SVM (`y` in {1, -1}), cost chosen by `cv_folds`-fold CV on AP.

    None when the class has too few positives or negatives to train on (fewer than 2).
    """
    n_pos, n_neg = int((y == 1).sum()), int((y == -1).sum())
    if min(n_pos, n_neg) < 2:
        return None
    # Positives are rare: weight the classes to balance, as the VOC SVM benchmarks do.
    # dual=True: liblinear's dual coordinate descent. scikit-learn's "auto" picks the primal
    # solver when rows outnumber dimensions, which was 4-20x slower on these features and
    # stopped at max_iter without converging at C >= 0.1 (BENCHMARKS.md, "VOC07 SVM solver").
    svm = LinearSVC(class_weight="balanced", dual=True, max_iter=max_iter, random_state=seed)
    folds = min(cv_folds, n_pos, n_neg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(costs) == 1:
            return svm.set_params(C=costs[0]).fit(x, y)
        search = GridSearchCV(svm, {"C": list(costs)}, scoring="average_precision",
                              cv=StratifiedKFold(folds, shuffle=True, random_state=seed), refit=True)
        return search.fit(x, y).best_estimator_


def _class_scores(train_x: np.ndarray, labels: np.ndarray, test_x: np.ndarray, costs: tuple[float, ...],
                  cv_folds: int, seed: int, max_iter: int) -> np.ndarray | None:
    """One class's decision values on the test rows (None: the class cannot be trained)."""
    known = labels != 0
    svm = fit_class_svm(train_x[known], labels[known], costs, cv_folds, seed, max_iter)
    return None if svm is None else svm.decision_function(test_x)


def svm_scores(train_x: np.ndarray, train_labels: np.ndarray, test_x: np.ndarray,
               costs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0), cv_folds: int = 3, seed: int = 0,
               max_iter: int = 2000, n_jobs: int = 1) -> np.ndarray:
    """Each class's SVM decision value on every test row (N_test x C; a NaN column for a class
    with fewer than 2 training positives or negatives).

    `train_labels` is N x C in {1, -1, 0}; 0 is left out of training. Features are
    standardised with statistics of the training set only. The classes are fitted in
    `n_jobs` processes (-1: one per core); the result does not depend on `n_jobs`.
    """
    train_x, test_x = np.asarray(train_x, np.float32), np.asarray(test_x, np.float32)
    train_labels = np.asarray(train_labels)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be N x d with the same d, got {train_x.shape} and {test_x.shape}")
    if train_labels.ndim != 2 or len(train_labels) != len(train_x):
        raise ValueError(f"labels must be N x C, got {train_labels.shape} for {len(train_x)} feature rows")
    scaler = StandardScaler().fit(train_x)
    train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)
    # Processes, not threads: liblinear draws its coordinate order from one process-wide
    # generator, so threads would interleave their draws and change the result from run
    # to run. joblib memory-maps the feature arrays into the workers instead of copying.
    columns = Parallel(n_jobs=n_jobs, prefer="processes")(
        delayed(_class_scores)(train_x, train_labels[:, c], test_x, costs, cv_folds, seed, max_iter)
        for c in range(train_labels.shape[1]))
    scores = np.full((len(test_x), train_labels.shape[1]), np.nan)
    for c, column in enumerate(columns):
        if column is not None:
            scores[:, c] = column
    return scores


def mean_ap(scores: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """mAP (percent) over the classes that can be scored, and the per-class APs (NaN: not
    scored: no SVM, or no test positive)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be N x C")
    aps = np.array([np.nan if np.isnan(scores[:, c]).any() else voc07_average_precision(scores[:, c], labels[:, c])
                    for c in range(labels.shape[1])])
    if np.isnan(aps).all():
        raise ValueError("no class could be scored: each needs 2 training positives and negatives and a test positive")
    return float(np.nanmean(aps)), aps


def svm_map(train_x: np.ndarray, train_labels: np.ndarray, test_x: np.ndarray, test_labels: np.ndarray,
            costs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0), cv_folds: int = 3, seed: int = 0,
            max_iter: int = 2000, n_jobs: int = 1) -> tuple[float, np.ndarray]:
    """The VOC07 SVM protocol: mAP (percent) and the per-class APs (NaN: class not scored)."""
    test_labels = np.asarray(test_labels)
    if test_labels.shape != (len(test_x), np.shape(train_labels)[-1]):
        raise ValueError(f"labels must be N x C for the same C, got {np.shape(train_labels)} and {test_labels.shape} "
                         f"for {len(train_x)} and {len(test_x)} feature rows")
    return mean_ap(svm_scores(train_x, train_labels, test_x, costs, cv_folds, seed, max_iter, n_jobs), test_labels)
