"""Benchmark: the downstream probes' cost.

1. The VOC07 SVM protocol at Pascal VOC 2007's scale with a ResNet-50's width: 5,000
   trainval x 2,048 features, 20 classes (multi-label, about 10 % positive each), 5,000
   test rows, the ``fast`` protocol's cost grid (4 costs) with 3-fold cross-validation per class:
   wall seconds in one process and in one process per core (``n_jobs``), and the dual solver
   the protocol uses against the primal one, per class.
2. The segmentation probe: frozen feature maps (ResNet-18, 128 px) images/s, head training
   image-epochs/s, and the whole probe's images/s (training images x epochs + validation
   images, over its wall time) on the synthetic ADE20K layout.
4. The two named SVM protocols (``trainables.probes.svm.PROTOCOLS``) in the same run, at
   Pascal VOC 2007's size (5,011 trainval x 2,048 synthetic features, 20 classes, 4,952
   test rows): ``fast`` (4 costs) and ``goyal2019`` (26 costs, Goyal et al.'s grid) on the
   first ``--classes-run`` classes (all 20 when 0; extrapolated to 20 when fewer), wall
   and CPU seconds and their ratio (``--protocols`` runs only this part).
3. What ``voc07`` + ``voc07_boxes`` add to one trial of the default preset (64 px,
   ResNet-18, the synthetic scenes' 300 + 300 images): their evaluation seconds under each
   SVM protocol, and the scenes' one-off generation (``--demo-probes`` runs only this part).

CPU seconds (this process's, all threads) are printed beside wall seconds: on a shared
machine the wall time depends on the other tenants, the CPU time much less.

    python -m benchmarks.bench_probes [--quick]
    python -m benchmarks.bench_probes --protocols [--classes-run 2] [--n-jobs 1]
    python -m benchmarks.run probes
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from benchmarks.machine import command_line, machine


class Clock:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def bench_svm(n: int = 5000, dim: int = 2048, classes: int = 20, solver_classes: int = 2) -> dict:
    """The SVM protocol on one and on every core, and liblinear's dual solver (the protocol's)
    against the primal one (scikit-learn's "auto" choice when rows outnumber dimensions) on
    the first `solver_classes` classes: the same cost search, the same folds."""
    import os
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from trainables.probes.svm import svm_map

    rng = np.random.default_rng(0)
    directions = rng.normal(size=(classes, dim)).astype(np.float32)

    def split(seed):
        r = np.random.default_rng(seed)
        present = r.random((n, classes)) < 0.1
        x = present @ directions * 0.3 + r.normal(size=(n, dim)).astype(np.float32)
        return x.astype(np.float32), np.where(present, 1, -1).astype(np.int8)

    (train_x, train_y), (test_x, test_y) = split(1), split(2)
    out = {"svm_shape": f"{n} x {dim} x {classes} classes, 4 costs x 3 folds", "cores": os.cpu_count()}
    for jobs, key in ((1, "one_process"), (-1, "all_cores")):  # (the CPU clock sees this process only)
        with Clock() as clock:
            value, _ = svm_map(train_x, train_y, test_x, test_y, n_jobs=jobs, protocol="fast")
        out |= {f"svm_{key}_wall_seconds": round(clock.wall, 1), f"svm_{key}_map": round(value, 2)}
    out["svm_all_cores_speedup"] = round(out["svm_one_process_wall_seconds"] / out["svm_all_cores_wall_seconds"], 2)

    x = StandardScaler().fit_transform(train_x)
    for dual, key in ((True, "dual"), (False, "primal")):
        with Clock() as clock, warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for c in range(solver_classes):
                svm = LinearSVC(class_weight="balanced", dual=dual, max_iter=2000, random_state=0)
                GridSearchCV(svm, {"C": [0.01, 0.1, 1.0, 10.0]}, scoring="average_precision",
                             cv=StratifiedKFold(3, shuffle=True, random_state=0)).fit(x, train_y[:, c])
        out[f"solver_{key}_seconds_per_class"] = round(clock.wall / solver_classes, 1)
    out["solver_primal_over_dual"] = round(out["solver_primal_seconds_per_class"] / out["solver_dual_seconds_per_class"], 1)
    return out


def voc_like_features(n: int, dim: int, classes: int, seed: int, signal: float = 0.3,
                      rate: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic multi-label features: each present class adds `signal` x its direction to
    Gaussian noise; labels in {1, -1}, about `rate` positive per class."""
    directions = np.random.default_rng(0).normal(size=(classes, dim)).astype(np.float32)
    r = np.random.default_rng(seed)
    present = r.random((n, classes)) < rate
    x = present @ directions * signal + r.normal(size=(n, dim)).astype(np.float32)
    return x.astype(np.float32), np.where(present, 1, -1).astype(np.int8)


def bench_svm_protocols(n_train: int = 5011, n_test: int = 4952, dim: int = 2048, classes: int = 20,
                        classes_run: int = 0, n_jobs: int = 1) -> dict:
    """Both protocols on the same features and the same first `classes_run` classes (0: all)
    in one run: wall and CPU seconds, per class and for all `classes` (extrapolated from
    the per-class cost when fewer were run), and their ratio. With ``n_jobs=1`` the fits run
    in this process, so its CPU clock counts them (a loaded machine stretches the wall time,
    much less the CPU time)."""
    from trainables.probes.svm import PROTOCOLS, svm_map

    (train_x, train_y), (test_x, test_y) = (voc_like_features(n_train, dim, classes, 1),
                                            voc_like_features(n_test, dim, classes, 2))
    k = classes_run or classes
    if n_jobs != 1:
        from joblib import Parallel, delayed

        # Start the worker processes before timing, so neither protocol pays their start-up.
        Parallel(n_jobs=n_jobs, prefer="processes")(delayed(abs)(i) for i in range(4))
    out = {"protocols_shape": f"{n_train} trainval x {dim} x {classes} classes, {n_test} test rows; "
                              f"both protocols on the first {k} classes, n_jobs={n_jobs}"}
    suffix = "" if k == classes else "_extrapolated"
    for name in ("fast", "goyal2019"):
        with Clock() as clock:
            value, _ = svm_map(train_x, train_y[:, :k], test_x, test_y[:, :k], n_jobs=n_jobs, protocol=name)
        out |= {f"{name}_costs": len(PROTOCOLS[name].costs),
                f"{name}_wall_seconds": round(clock.wall, 1), f"{name}_cpu_seconds": round(clock.cpu, 1),
                f"{name}_wall_seconds_per_class": round(clock.wall / k, 2),
                f"{name}_cpu_seconds_per_class": round(clock.cpu / k, 2),
                f"{name}_wall_seconds_{classes}_classes{suffix}": round(clock.wall / k * classes, 1),
                f"{name}_cpu_seconds_{classes}_classes{suffix}": round(clock.cpu / k * classes, 1),
                f"{name}_map": round(value, 2)}
    for clock in ("wall", "cpu"):
        out[f"goyal2019_over_fast_{clock}"] = round(out[f"goyal2019_{clock}_seconds"] / out[f"fast_{clock}_seconds"], 2)
    return out


def bench_seg(cache: str, scenes: int) -> dict:
    from datasets.synthetic.scenes import ensure_synthetic_scenes
    from trainables.config import TrialConfig
    from trainables.evaluation import evaluate
    from trainables.features import extract_feature_maps
    from trainables.models import resnet_backbone
    from trainables.probes.seg import LAYERS, SegmentationProbe, load_pairs, train_and_score_head

    root = ensure_synthetic_scenes(trainval=scenes, test=scenes, image_size=128, cache=cache) / "ADEChallengeData2016"
    from datasets.ade20k import read_ade20k

    train, val = read_ade20k(root, "training"), read_ade20k(root, "validation")
    probe = SegmentationProbe()
    torch.manual_seed(0)
    backbone = resnet_backbone("resnet18")[0].eval()
    x, y, _ = load_pairs(train.images, train.masks, probe.input_size)
    xv, yv, _ = load_pairs(val.images, val.masks, probe.input_size)
    with Clock() as maps_clock:
        maps = extract_feature_maps(backbone, x, LAYERS, 256, "cpu")
    maps_val = extract_feature_maps(backbone, xv, LAYERS, 256, "cpu")
    with Clock() as head_clock:
        train_and_score_head(maps, y, maps_val, yv, len(train.class_names), probe.epochs, probe.lr,
                             probe.batch_size, 0)
    trial = TrialConfig().override({"image_size": 64, "invariances": "", "probes": "seg", "data_cache": cache,
                                    "data.ade20k.trainval": scenes, "data.ade20k.test": scenes})
    with Clock() as whole:
        metrics = evaluate(backbone, trial, "cpu")
    images = scenes * probe.epochs + scenes
    return {"seg_setting": f"resnet18, {probe.input_size} px, {scenes} train + {scenes} val, {probe.epochs} epochs",
            "seg_feature_maps_images_per_second": round(len(x) / maps_clock.wall, 1),
            "seg_head_image_epochs_per_second": round(len(x) * probe.epochs / head_clock.wall, 1),
            "seg_probe_wall_seconds": round(whole.wall, 1), "seg_probe_cpu_seconds": round(whole.cpu, 1),
            "seg_probe_images_per_second": round(images / whole.wall, 1),
            "seg_miou_random_init": round(metrics["probe/seg_miou"], 2)}


def bench_voc_probes(cache: str, protocols: tuple[str, ...] = ("fast", "goyal2019")) -> dict:
    """`voc07` + `voc07_boxes` in one trial of the default preset, under each SVM protocol
    (the same scenes and crops; the first evaluation also writes the crops)."""
    from datasets.sources.scenes import SyntheticVoc
    from trainables.config import TrialConfig
    from trainables.evaluation import evaluate
    from trainables.models import resnet_backbone

    base = TrialConfig().override({"invariances": "", "probes": "voc07,voc07_boxes", "data_cache": cache})
    with Clock() as generate:
        SyntheticVoc().resolve(base)
    torch.manual_seed(0)
    backbone = resnet_backbone(base.arch)[0].eval()
    with Clock() as first:
        evaluate(backbone, base, "cpu")  # crops written once, then reused
    out = {"voc_scene_generation_wall_seconds": round(generate.wall, 1),
           "voc_probes_first_trial_wall_seconds": round(first.wall, 1)}
    for protocol in protocols:
        trial = base.override({"probes.voc07.protocol": protocol, "probes.voc07_boxes.protocol": protocol})
        with Clock() as again:
            metrics = evaluate(backbone, trial, "cpu")
        out |= {f"voc_probes_{protocol}_per_trial_wall_seconds": round(again.wall, 1),
                f"voc_probes_{protocol}_per_trial_cpu_seconds": round(again.cpu, 1),
                f"voc07_map_{protocol}_random_init": round(metrics["probe/voc07_map"], 2),
                f"voc07_boxes_map_{protocol}_random_init": round(metrics["probe/voc07_boxes_map"], 2)}
    return out


def run(quick: bool = False) -> dict:
    result = {"machine": machine(), "command": command_line(), "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="dssl-probes-") as cache:
        result |= bench_voc_probes(cache)
        result |= bench_seg(cache, 60 if quick else 300)
    result |= bench_svm(n=1000 if quick else 5000)
    result |= (bench_svm_protocols(1000, 1000, classes_run=2) if quick else bench_svm_protocols())
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    parser.add_argument("--protocols", action="store_true", help="only part 4: the two SVM protocols at VOC scale")
    parser.add_argument("--demo-probes", action="store_true",
                        help="only part 3: voc07 + voc07_boxes per default-preset trial, under each protocol")
    parser.add_argument("--classes-run", type=int, default=0,
                        help="part 4: run both protocols on this many of the 20 classes, extrapolated (0 = all)")
    parser.add_argument("--n-jobs", type=int, default=1, help="part 4: processes fitting the classes (default %(default)s)")
    args = parser.parse_args()
    if args.demo_probes:
        with tempfile.TemporaryDirectory(prefix="dssl-probes-") as cache:
            result = {"machine": machine(), "command": command_line(), "torch_threads": torch.get_num_threads()}
            result |= bench_voc_probes(cache)
    elif args.protocols:
        result = {"machine": machine(), "command": command_line()}
        result |= bench_svm_protocols(classes_run=args.classes_run, n_jobs=args.n_jobs)
    else:
        result = run(args.quick)
    print(json.dumps(result, indent=2))
