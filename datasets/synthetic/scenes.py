"""Synthetic scenes: several objects per image with controlled co-occurrence, written in
Pascal VOC 2007's, MS-COCO's and ADE20K SceneParsing's layouts.

The paper's dataset-bias study (Sec. 4.3, Table 2) contrasts scene-centric data (COCO:
several objects per image, in context) with object-centric data, and notes that VOC07's
benchmark rewards context through co-occurrence (its footnote scores test images showing
a table or a chair but not both). This generator is that setting at laptop scale:

- Each scene is a cluttered background (``objects.clutter_background``) with
  procedural objects (``shapes``), each a new random instance in a random pose, size
  (:data:`OBJECT_SCALE`) and place, seen from one camera (elevation
  :data:`ELEVATION_DEG`) under one random lighting; later objects hide earlier ones.
- Density is a knob: a scene holds 1 to ``2 * objects_per_scene - 1`` objects, uniformly
  (mean ``objects_per_scene``; default :data:`OBJECTS_PER_SCENE`, COCO's 7).
- Co-occurrence is controlled: the classes are paired (``cooccurring_pairs``: 1st with
  2nd, 3rd with 4th, ...). A scene draws a primary class uniformly, adds its partner with
  probability ``cooccurrence`` and, with probability 1/2, a class of another pair; its
  objects are instances of those classes (at least one of each while the count allows).
  So paired classes appear together far more often than any other two.
- Annotations are exact: an object's box is the box of its visible pixels; an object
  with under :data:`DIFFICULT_VISIBLE` of its silhouette visible is marked ``difficult``
  (so a class file can hold VOC's 0 label), and one with fewer than
  :data:`MIN_VISIBLE_PIXELS` visible pixels is dropped.

One set of scenes, three layouts under one root (the images hard-linked, not copied):

    VOC2007/JPEGImages/000001.jpg  Annotations/000001.xml  ImageSets/Main/{trainval,train,val,test}.txt
            ImageSets/Main/<class>_<split>.txt
    coco/train2017/000000000001.jpg  coco/val2017/...  coco/annotations/instances_{train,val}2017.json
    ADEChallengeData2016/images/{training,validation}/ADE_train_00000001.jpg
            annotations/{training,validation}/ADE_train_00000001.png  objectInfo150.txt  sceneCategories.txt

VOC ``trainval`` = COCO ``train2017`` = ADE ``training``; ``test`` = ``val2017`` =
``validation``. A different ``seed`` gives disjoint scenes (the pretraining sets use
another seed than the VOC probe's, ``datasets.sources.scenes``). :func:`write_centred_objects`
writes the object-centric twin of a set: each scene's one object, alone and centred. Mask index 1 is the background, 2.. the object classes (0, ADE's
"other", is unused).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from datasets.cache import build_once, cache_key, cache_root
from datasets.synthetic.objects import _random_lighting, clutter_background, object_classes
from datasets.synthetic.parallel import run_jobs
from datasets.synthetic.render import Camera, Lighting, Pose, rasterize, rotation_about, rotation_z, shade, write_png
from datasets.synthetic.shapes import ObjectMesh, make_object

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # 2: objects_per_scene (1: one object per drawn class, 1-3)
CENTRED_VERSION = 1
OBJECTS_PER_SCENE = 7  # COCO's mean: 7.3 annotated instances per image (Lin et al. 2014)
MAX_OBJECTS_PER_SCENE = 15
OBJECT_SCALE = (0.3, 0.5)  # every object's size, in scenes and alone (render.Pose.scale)
ELEVATION_DEG = (5.0, 40.0)  # the camera's elevation over the ground
DIFFICULT_VISIBLE = 0.3
MIN_VISIBLE_PIXELS = 12
BACKGROUND_CLASS = "background"
_SEED_STREAM = 5
_PICK_STREAM = 6  # which object of a scene the centred image shows (apart from the scene's draws)
_SUPERSAMPLE = 2
_SCENES_PER_JOB = 25
# (name in the VOC split lists, COCO split, ADE split, file-name prefix)
SPLITS = {"trainval": ("train2017", "training", "ADE_train"), "test": ("val2017", "validation", "ADE_val")}


def cooccurring_pairs(num_classes: int) -> list[tuple[str, str]]:
    """The class pairs that appear together often: consecutive classes in label order."""
    classes = object_classes(num_classes)
    return [(classes[k], classes[k + 1]) for k in range(0, len(classes) - 1, 2)]


def _partner(classes: list[str], index: int) -> int | None:
    partner = index ^ 1
    return partner if partner < len(classes) else None


def object_count(rng: np.random.Generator, objects_per_scene: int) -> int:
    """How many objects one scene holds: uniform from 1 to ``2 * objects_per_scene - 1``
    (mean ``objects_per_scene``; a long tail of crowded scenes, as in COCO)."""
    check_objects_per_scene(objects_per_scene)
    return int(rng.integers(1, 2 * objects_per_scene))


def check_objects_per_scene(objects_per_scene: int) -> None:
    if not 1 <= objects_per_scene <= MAX_OBJECTS_PER_SCENE:
        raise ValueError(f"objects_per_scene must be from 1 to {MAX_OBJECTS_PER_SCENE} (the mean number of objects "
                         f"in a scene), got {objects_per_scene}")


def scene_classes(rng: np.random.Generator, classes: list[str], cooccurrence: float, count: int) -> list[int]:
    """The class indices of one scene's ``count`` objects, in painting order.

    The scene's classes are drawn as the module docstring says (primary, partner, one
    other); its objects are one instance of each (the first ``count`` of them) and the
    rest further instances of those classes, so the density changes how many objects a
    scene shows, not which classes meet.
    """
    primary = int(rng.integers(len(classes)))
    chosen = [primary]
    partner = _partner(classes, primary)
    if partner is not None and rng.random() < cooccurrence:
        chosen.append(partner)
    others = [k for k in range(len(classes)) if k not in (primary, partner)]
    if others and rng.random() < 0.5:
        chosen.append(int(rng.choice(others)))
    chosen = chosen[:count]
    chosen += [int(k) for k in rng.choice(chosen, count - len(chosen))]
    return [chosen[k] for k in rng.permutation(len(chosen))]


@dataclass(frozen=True)
class SceneLayout:
    """What one scene shows, before rendering: the supersampled background, the camera,
    the lamps and each object (class index, mesh, pose) in painting order."""

    background: np.ndarray
    camera: Camera
    lighting: Lighting
    classes: list[int]
    meshes: list[ObjectMesh]
    poses: list[Pose]


def scene_layout(rng: np.random.Generator, classes: list[str], cooccurrence: float, size: int,
                 objects_per_scene: int = OBJECTS_PER_SCENE) -> SceneLayout:
    """Draw one scene (see the module docstring); ``size`` is the output image's side."""
    background = clutter_background(rng, size * _SUPERSAMPLE)
    camera = Camera(azimuth_deg=0.0, elevation_deg=float(rng.uniform(*ELEVATION_DEG)))
    right, up, _ = camera.axes()
    lighting = _random_lighting(rng)
    picked = scene_classes(rng, classes, cooccurrence, object_count(rng, objects_per_scene))
    meshes, poses = [], []
    for cls in picked:
        meshes.append(make_object(classes[cls], rng))
        tilt = rotation_about(np.append(rng.normal(size=2), 0.0), float(np.clip(rng.normal(0, 20), -45, 45)))
        offset = rng.uniform(-0.75, 0.75) * right + rng.uniform(-0.75, 0.75) * up
        poses.append(Pose(rotation=tilt @ rotation_z(rng.uniform(0, 360)), scale=float(rng.uniform(*OBJECT_SCALE)),
                          offset=offset))
    return SceneLayout(background, camera, lighting, picked, meshes, poses)


def render_scene(rng: np.random.Generator, classes: list[str], cooccurrence: float, size: int,
                 objects_per_scene: int = OBJECTS_PER_SCENE) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One scene: RGB uint8 image, class-index mask (1 background, 2.. classes) and its objects
    (``class``, ``box`` = visible (x0, y0, x1, y1) 0-based inclusive, ``pixels``, ``difficult``,
    ``silhouette`` = the unoccluded object's share of the image)."""
    layout = scene_layout(rng, classes, cooccurrence, size, objects_per_scene)
    big = size * _SUPERSAMPLE
    canvas = layout.background
    instance = np.full((big, big), -1, np.int32)
    silhouettes = []
    for k, (mesh, pose) in enumerate(zip(layout.meshes, layout.poses)):
        faces = rasterize(mesh, pose, layout.camera, big)
        covered = faces >= 0
        canvas = np.where(covered[..., None], np.take(shade(mesh, pose, layout.lighting), faces, axis=0), canvas)
        instance[covered] = k
        silhouettes.append(int(covered.sum()))
    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    instance = cv2.resize(instance, (size, size), interpolation=cv2.INTER_NEAREST)
    mask = np.ones((size, size), np.uint8)
    objects = []
    for k, cls in enumerate(layout.classes):
        visible = instance == k
        pixels = int(visible.sum())
        if pixels < MIN_VISIBLE_PIXELS:
            continue
        mask[visible] = cls + 2
        ys, xs = np.nonzero(visible)
        full = silhouettes[k] / _SUPERSAMPLE ** 2
        objects.append({"class": classes[cls], "box": (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())),
                        "pixels": pixels, "difficult": pixels < DIFFICULT_VISIBLE * full,
                        "silhouette": silhouettes[k] / big ** 2})
    return image, mask, objects


def render_centred_object(layout: SceneLayout, index: int, size: int) -> tuple[np.ndarray, float]:
    """Object ``index`` of a scene alone and centred, over the scene's own background,
    camera and lamps (same mesh, rotation and scale): the object-centric image of that
    scene. Returns the RGB uint8 image and the object's share of it."""
    mesh, pose = layout.meshes[index], layout.poses[index]
    centred = Pose(rotation=pose.rotation, scale=pose.scale)  # offset 0: the view's centre
    big = size * _SUPERSAMPLE
    faces = rasterize(mesh, centred, layout.camera, big)
    covered = faces >= 0
    canvas = np.where(covered[..., None], np.take(shade(mesh, centred, layout.lighting), faces, axis=0),
                      layout.background)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA), float(covered.mean())


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SEED_STREAM, list(SPLITS).index(split), index])


def _render_job(job: tuple[str, int, int], root: Path, classes: list[str], cooccurrence: float, size: int,
                seed: int, trainval: int, objects_per_scene: int) -> list[list[dict]]:
    """Render scenes `first`..`first+count-1` of `split`; write their JPEG (VOC) and mask (ADE)."""
    split, first, count = job
    out = []
    for index in range(first, first + count):
        image, mask, objects = render_scene(scene_rng(seed, split, index), classes, cooccurrence, size,
                                             objects_per_scene)
        name = _names(split, index, trainval)
        cv2.imwrite(str(root / "VOC2007" / "JPEGImages" / f"{name['voc']}.jpg"),
                    cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(root / "ADEChallengeData2016" / "annotations" / SPLITS[split][1] / f"{name['ade']}.png"), mask)
        out.append(objects)
    return out


def _names(split: str, index: int, trainval: int) -> dict:
    """File stems of scene `index` of `split` in each layout (VOC ids: trainval first, then test)."""
    number = index + 1 if split == "trainval" else trainval + index + 1
    return {"voc": f"{number:06d}", "coco": f"{number:012d}", "ade": f"{SPLITS[split][2]}_{index + 1:08d}", "id": number}


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system: copy
        target.write_bytes(source.read_bytes())


def _check_settings(num_classes: int, cooccurrence: float, image_size: int, objects_per_scene: int) -> list[str]:
    classes = object_classes(num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 (a co-occurring pair), got {num_classes}")
    if not 0.0 <= cooccurrence <= 1.0:
        raise ValueError(f"cooccurrence must be in [0, 1], got {cooccurrence}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    check_objects_per_scene(objects_per_scene)
    return classes


def write_scenes(root: Path, num_classes: int = 6, trainval: int = 300, test: int = 300, image_size: int = 128,
                 cooccurrence: float = 0.8, seed: int = 0, processes: int | None = None,
                 objects_per_scene: int = OBJECTS_PER_SCENE) -> Path:
    """Write the scenes in the three layouts under `root` (see the module docstring)."""
    classes = _check_settings(num_classes, cooccurrence, image_size, objects_per_scene)
    if trainval < 1 or test < 1:
        raise ValueError(f"need at least one trainval and one test scene, got {trainval} and {test}")
    root = Path(root)
    voc = root / "VOC2007"
    ade = root / "ADEChallengeData2016"
    for folder in (voc / "JPEGImages", voc / "Annotations", voc / "ImageSets" / "Main", root / "coco" / "annotations",
                   *(root / "coco" / s[0] for s in SPLITS.values()),
                   *(ade / kind / s[1] for s in SPLITS.values() for kind in ("images", "annotations"))):
        folder.mkdir(parents=True, exist_ok=True)
    counts = {"trainval": trainval, "test": test}
    started = time.perf_counter()
    scenes: dict[str, list[list[dict]]] = {}
    for split, count in counts.items():
        jobs = [(split, first, min(_SCENES_PER_JOB, count - first)) for first in range(0, count, _SCENES_PER_JOB)]
        results = run_jobs(partial(_render_job, root=root, classes=classes, cooccurrence=cooccurrence,
                                   size=image_size, seed=seed, trainval=trainval,
                                   objects_per_scene=objects_per_scene), jobs, processes)
        scenes[split] = [objects for chunk in results for objects in chunk]
    _finish(root, classes, scenes, trainval, image_size)
    log.info("wrote %d + %d synthetic scenes (%d classes) to %s in %.1f s", trainval, test, num_classes, root,
             time.perf_counter() - started)
    return root


def _voc_xml(name: dict, size: int, objects: list[dict]) -> str:
    parts = [f"<annotation><folder>VOC2007</folder><filename>{name['voc']}.jpg</filename>",
             "<source><database>demystify-ssl synthetic scenes</database></source>",
             f"<size><width>{size}</width><height>{size}</height><depth>3</depth></size><segmented>1</segmented>"]
    for obj in objects:
        x0, y0, x1, y1 = obj["box"]  # 0-based inclusive -> VOC's 1-based inclusive
        truncated = int(min(x0, y0) == 0 or max(x1, y1) == size - 1)
        parts.append(f"<object><name>{obj['class']}</name><pose>Unspecified</pose><truncated>{truncated}</truncated>"
                     f"<difficult>{int(obj['difficult'])}</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                     f"<xmax>{x1 + 1}</xmax><ymax>{y1 + 1}</ymax></bndbox></object>")
    return "\n".join(parts) + "\n</annotation>\n"


def _image_label(objects: list[dict], cls: str) -> int:
    """VOC's class-file label: 1 present, 0 only difficult instances, -1 absent."""
    mine = [o for o in objects if o["class"] == cls]
    if any(not o["difficult"] for o in mine):
        return 1
    return 0 if mine else -1


def _finish(root: Path, classes: list[str], scenes: dict[str, list[list[dict]]], trainval: int, size: int) -> None:
    """Annotations, split lists and class files, COCO JSON, ADE links and class list."""
    voc, ade = root / "VOC2007", root / "ADEChallengeData2016"
    main = voc / "ImageSets" / "Main"
    names = {split: [_names(split, i, trainval) for i in range(len(objs))] for split, objs in scenes.items()}
    for split, objs in scenes.items():
        for name, objects in zip(names[split], objs):
            (voc / "Annotations" / f"{name['voc']}.xml").write_text(_voc_xml(name, size, objects))
    half = trainval // 2
    lists = {"trainval": (names["trainval"], scenes["trainval"]), "test": (names["test"], scenes["test"]),
             "train": (names["trainval"][:half], scenes["trainval"][:half]),
             "val": (names["trainval"][half:], scenes["trainval"][half:])}
    for split, (split_names, split_objects) in lists.items():
        (main / f"{split}.txt").write_text("".join(f"{n['voc']}\n" for n in split_names))
        for cls in classes:
            (main / f"{cls}_{split}.txt").write_text(
                "".join(f"{n['voc']} {_image_label(o, cls):2d}\n" for n, o in zip(split_names, split_objects)))

    category_ids = {cls: k + 1 for k, cls in enumerate(classes)}
    annotation_id = 1
    for split, (coco_split, ade_split, _) in SPLITS.items():
        images, annotations = [], []
        for name, objects in zip(names[split], scenes[split]):
            jpeg = voc / "JPEGImages" / f"{name['voc']}.jpg"
            _link(jpeg, root / "coco" / coco_split / f"{name['coco']}.jpg")
            _link(jpeg, ade / "images" / ade_split / f"{name['ade']}.jpg")
            images.append({"license": 0, "file_name": f"{name['coco']}.jpg", "height": size, "width": size,
                           "date_captured": "", "id": name["id"]})
            for obj in objects:
                x0, y0, x1, y1 = obj["box"]
                w, h = x1 - x0 + 1, y1 - y0 + 1
                annotations.append({"segmentation": [[x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]],
                                    "area": obj["pixels"], "iscrowd": 0, "image_id": name["id"],
                                    "bbox": [x0, y0, w, h], "category_id": category_ids[obj["class"]],
                                    "id": annotation_id})
                annotation_id += 1
        data = {"info": {"description": "demystify-ssl synthetic scenes"}, "licenses": [], "images": images,
                "annotations": annotations,
                "categories": [{"supercategory": "shape", "id": i, "name": c} for c, i in category_ids.items()]}
        (root / "coco" / "annotations" / f"instances_{coco_split}.json").write_text(json.dumps(data))

    ade_names = [BACKGROUND_CLASS, *classes]
    rows = ["Idx\tRatio\tTrain\tVal\tName"]
    for k, name in enumerate(ade_names, start=1):
        train = sum(1 for o in scenes["trainval"] if k == 1 or any(x["class"] == name for x in o))
        val = sum(1 for o in scenes["test"] if k == 1 or any(x["class"] == name for x in o))
        rows.append(f"{k}\t0.0\t{train}\t{val}\t{name}")
    (ade / "objectInfo150.txt").write_text("\n".join(rows) + "\n")
    (ade / "sceneCategories.txt").write_text("".join(
        f"{n['ade']} synthetic_scene\n" for split in SPLITS for n in names[split]))


def ensure_synthetic_scenes(num_classes: int = 6, trainval: int = 300, test: int = 300, image_size: int = 128,
                            cooccurrence: float = 0.8, seed: int = 0, cache: str = "",
                            processes: int | None = None, objects_per_scene: int = OBJECTS_PER_SCENE) -> Path:
    """The synthetic scene root (``VOC2007/``, ``coco/``, ``ADEChallengeData2016/``), generated once."""
    _check_settings(num_classes, cooccurrence, image_size, objects_per_scene)  # fail before taking the lock
    key = cache_key("synthetic-scenes", GENERATOR_VERSION, classes=num_classes, trainval=trainval, test=test,
                    size=image_size, cooc=cooccurrence, seed=seed, objects=objects_per_scene)
    return build_once(cache_root(cache) / key, lambda tmp: write_scenes(
        tmp, num_classes, trainval, test, image_size, cooccurrence, seed, processes, objects_per_scene))


def centred_object_of_scene(seed: int, index: int, classes: list[str], cooccurrence: float, size: int,
                            objects_per_scene: int) -> tuple[str, np.ndarray, float]:
    """The object-centric image of trainval scene `index`: one of its objects, drawn
    uniformly (so the classes are as frequent as among the scenes' objects), alone and
    centred (:func:`render_centred_object`). Returns its class, the image and the
    object's share of the image."""
    layout = scene_layout(scene_rng(seed, "trainval", index), classes, cooccurrence, size, objects_per_scene)
    pick = int(np.random.default_rng([seed, _PICK_STREAM, index]).integers(len(layout.classes)))
    image, share = render_centred_object(layout, pick, size)
    return classes[layout.classes[pick]], image, share


def _centred_job(job: tuple[int, int], root: Path, classes: list[str], cooccurrence: float, size: int, seed: int,
                 objects_per_scene: int) -> int:
    first, count = job
    for index in range(first, first + count):
        cls, image, _ = centred_object_of_scene(seed, index, classes, cooccurrence, size, objects_per_scene)
        write_png(root / "train" / cls / f"{index + 1:06d}.png", image)
    return count


def write_centred_objects(root: Path, num_classes: int = 6, images: int = 300, image_size: int = 128,
                          cooccurrence: float = 0.8, seed: int = 0, processes: int | None = None,
                          objects_per_scene: int = OBJECTS_PER_SCENE) -> Path:
    """The object-centric twin of :func:`write_scenes`' first `images` trainval scenes
    (same settings and seed): ``root/train/<class>/<n>.png``, one centred object each,
    from the same objects, poses, cameras, lamps and backgrounds; only "one centred
    object vs a scene" differs (paper Sec. 4.3's object-centric vs scene-centric data)."""
    classes = _check_settings(num_classes, cooccurrence, image_size, objects_per_scene)
    if images < 1:
        raise ValueError(f"need at least one image, got {images}")
    root = Path(root)
    for cls in classes:
        (root / "train" / cls).mkdir(parents=True, exist_ok=True)
    jobs = [(first, min(_SCENES_PER_JOB, images - first)) for first in range(0, images, _SCENES_PER_JOB)]
    run_jobs(partial(_centred_job, root=root, classes=classes, cooccurrence=cooccurrence, size=image_size, seed=seed,
                     objects_per_scene=objects_per_scene), jobs, processes)
    for cls in classes:  # a class no scene object drew: no empty folder for the image-folder reader
        folder = root / "train" / cls
        if not any(folder.iterdir()):
            folder.rmdir()
    return root


def ensure_centred_objects(num_classes: int = 6, images: int = 300, image_size: int = 128, cooccurrence: float = 0.8,
                           seed: int = 0, cache: str = "", processes: int | None = None,
                           objects_per_scene: int = OBJECTS_PER_SCENE) -> Path:
    """The object-centric twin of the synthetic scenes (:func:`write_centred_objects`), generated once."""
    _check_settings(num_classes, cooccurrence, image_size, objects_per_scene)
    key = cache_key("synthetic-centred-objects", CENTRED_VERSION, scenes=GENERATOR_VERSION, classes=num_classes,
                    images=images, size=image_size, cooc=cooccurrence, seed=seed, objects=objects_per_scene)
    return build_once(cache_root(cache) / key, lambda tmp: write_centred_objects(
        tmp, num_classes, images, image_size, cooccurrence, seed, processes, objects_per_scene))
