"""Benchmark: the dataset-bias study's data confounds, before and after (issue 21, item 4).

No training: statistics of the generated sets at the sweep's settings (``sweeps/dataset_bias.py``,
64 px trials, so scenes at 128 px), on ``--scenes`` images per set.

1. Overlap: pretraining images whose decoded pixels equal a VOC07 probe image's (trainval
   or test). Before, the pretraining folder was the probe's own trainval (one generated
   set); after, the pretraining scenes come from another seed.
2. Density: annotated objects per scene, probe (``synthetic-voc``) and pretraining
   (``synthetic-coco-scenes``) settings, and at ``objects_per_scene`` 1, 2 and 7.
3. The object-centric arm's object scale: the object's share of its image (silhouette
   pixels / image pixels), before (``synthetic-objects``: another generator, scale 0.55-1.0,
   elevation -5-50 deg, rendered at the trial's 64 px) and after (``synthetic-coco-objects``:
   each scene's one object centred, same renderer), against the scenes' objects'
   (unoccluded) share; and the image counts of the three arms (the sweep's ``--scenes``).

    python -m benchmarks.bench_dataset_bias_confounds [--scenes 60]
    python -m benchmarks.run dataset_bias_confounds
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import command_line, machine

TRIAL_SIZE = 64  # the sweep's image_size; scenes are rendered at twice it
CLASSES = 6


def _pixel_hashes(paths) -> set[str]:
    from PIL import Image

    return {hashlib.sha1(np.asarray(Image.open(p).convert("RGB")).tobytes()).hexdigest() for p in paths}


def _objects_per_scene(root: Path) -> list[int]:
    from datasets.voc import parse_annotation, read_voc_split

    split = read_voc_split(root, "trainval")
    return [len(parse_annotation(split.annotation_path(i)).objects) for i in split.ids]


def _share_on_plain(image: np.ndarray) -> float:
    """The object's share of a ``synthetic-objects`` photograph over its plain background."""
    from datasets.synthetic.objects import PLAIN_BACKGROUND

    return float((np.abs(image.astype(np.int16) - np.array(PLAIN_BACKGROUND)).max(axis=2) > 8).mean())


def _summary(values) -> dict:
    values = np.asarray(values, float)
    return {"mean": round(float(values.mean()), 4), "p10": round(float(np.percentile(values, 10)), 4),
            "p90": round(float(np.percentile(values, 90)), 4)}


def run(scenes: int = 60) -> dict:
    from datasets.sources.scenes import (PRETRAIN_SCENES_SEED, PROBE_SCENES_SEED, SyntheticCocoBoxes,
                                         SyntheticCocoObjects, SyntheticCocoScenes)
    from datasets.synthetic.objects import instance_rng, object_classes, photograph_instance
    from datasets.synthetic.scenes import centred_object_of_scene, render_scene, scene_rng, write_scenes

    started = time.perf_counter()
    size = 2 * TRIAL_SIZE
    classes = object_classes(CLASSES)
    out: dict = {"machine": machine(), "command": command_line(), "scenes": scenes}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The probe at its defaults (VOC-like density 2) and the pretraining scenes at theirs.
        probe = write_scenes(tmp / "probe", CLASSES, scenes, scenes, size, seed=PROBE_SCENES_SEED,
                             objects_per_scene=2, processes=1)
        pretrain = write_scenes(tmp / "pretrain", CLASSES, scenes, 2, size, seed=PRETRAIN_SCENES_SEED,
                                objects_per_scene=7, processes=1)
        probe_hashes = _pixel_hashes((probe / "VOC2007" / "JPEGImages").glob("*.jpg"))
        # Before: the pretraining folder was coco/train2017 of the probe's own root.
        out["overlap_before"] = len(_pixel_hashes((probe / "coco" / "train2017").glob("*.jpg")) & probe_hashes)
        out["overlap_after"] = len(_pixel_hashes((pretrain / "coco" / "train2017").glob("*.jpg")) & probe_hashes)
        out["objects_per_scene_probe"] = _summary(_objects_per_scene(probe))
        out["objects_per_scene_pretrain"] = _summary(_objects_per_scene(pretrain))
        for density in (1, 2, 7):
            counts = [len(render_scene(scene_rng(9, "trainval", k), classes, 0.8, size, density)[2])
                      for k in range(scenes)]
            out[f"objects_per_scene_knob{density}"] = round(float(np.mean(counts)), 2)

    in_scenes, after = [], []
    for k in range(scenes):
        in_scenes += [o["silhouette"] for o in render_scene(scene_rng(PRETRAIN_SCENES_SEED, "trainval", k), classes,
                                                            0.8, size, 7)[2]]
        after.append(centred_object_of_scene(PRETRAIN_SCENES_SEED, k, classes, 0.8, size, 7)[2])
    before = []
    for k in range(scenes):  # synthetic-objects: one instance, one photograph, plain background to measure
        category = classes[k % CLASSES]
        photo = photograph_instance(category, instance_rng(0, "train", category, k), 1, TRIAL_SIZE, "plain")[0]
        before.append(_share_on_plain(photo))
    out["object_share_scenes"] = _summary(in_scenes)
    out["object_share_object_arm_before"] = _summary(before)
    out["object_share_object_arm_after"] = _summary(after)
    # Images per arm at the sweep's defaults (its three pretraining sources' own counts).
    out["arm_images"] = {arm: source().num_images("train") for arm, source in
                         (("scenes", SyntheticCocoScenes), ("objects", SyntheticCocoObjects))}
    out["arm_images"]["boxes"] = SyntheticCocoBoxes(max_images=300).num_images("train")
    out["wall_s"] = round(time.perf_counter() - started, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=60, help="images per set (default: %(default)s)")
    print(json.dumps(run(parser.parse_args().scenes), indent=2))


if __name__ == "__main__":
    main()
