"""Scene data sources: Pascal VOC 2007, ADE20K SceneParsing and COCO's scenes or boxes
(real roots), and the synthetic scenes that write those layouts (datasets.synthetic.scenes).

COCO feeds pretraining, which reads ImageNet-style folders: ``coco-scenes`` is the
split's whole images, ``coco-boxes`` its annotated boxes cut out (paper Sec. 4.3, Table 2),
each built once as a folder in the cache (``datasets.coco.coco_image_folder``).

The synthetic probe sources (``synthetic-voc``, ``synthetic-ade20k``) read one generated
set of scenes (VOC ``trainval`` = COCO ``train2017`` = ADE ``training``), VOC-like (2
objects per scene on average). The synthetic pretraining sources read another set,
generated from another seed (``scenes_seed``), so no pretraining image is a probe image,
and COCO-like (7 objects per scene on average): ``synthetic-coco-scenes`` its whole
images, ``synthetic-coco-boxes`` its boxes cut out, and ``synthetic-coco-objects`` its
object-centric twin (each scene's one object alone and centred, same renderer, objects,
poses and backgrounds). All are rendered at twice the trial's ``image_size`` (scenes are
larger than the network's input, as COCO's are).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.sources.base import ADE20K, DATA_SOURCES, IMAGE_FOLDER, VOC2007, DataSource
from datasets.sources.real import RealRoot


@DATA_SOURCES.register
@dataclass(frozen=True)
class Voc2007Source(RealRoot):
    """A Pascal VOC 2007 root: ``VOC2007/`` (or ``VOCdevkit/`` or the folder holding it)."""

    name: ClassVar[str] = "voc2007"
    layout: ClassVar[str] = VOC2007

    def validate(self, root: Path, needs: tuple[str, ...]) -> None:
        from datasets.voc import validate_voc_root

        validate_voc_root(root, needs)


@DATA_SOURCES.register
@dataclass(frozen=True)
class Ade20kSource(RealRoot):
    """An ADE20K SceneParsing root: ``ADEChallengeData2016/`` (or the folder holding it)."""

    name: ClassVar[str] = "ade20k"
    layout: ClassVar[str] = ADE20K

    def validate(self, root: Path, needs: tuple[str, ...]) -> None:
        from datasets.ade20k import validate_ade_root

        validate_ade_root(root, needs)


class CocoImageFolder:
    """What the real and synthetic COCO views share: a COCO split cut into an image folder
    (``datasets.coco.coco_image_folder``: ``view`` "scenes" or "boxes"), at most
    ``max_images`` of them. Subclasses are dataclasses with a ``max_images`` field."""

    layout: ClassVar[str] = IMAGE_FOLDER
    view: ClassVar[str] = ""

    def max_images_problems(self) -> list[str]:
        return [] if self.max_images >= 0 else [f"max_images={self.max_images} must be >= 0 (0 = all)"]

    def image_folder(self, coco_root: Path, split: str, trial: Any) -> Path:
        from datasets.coco import coco_image_folder

        return coco_image_folder(coco_root, split, self.view, self.max_images, getattr(self, "min_box_side", 8),
                                 str(trial.data_cache))


@dataclass(frozen=True)
class CocoView(CocoImageFolder, RealRoot):
    """COCO's ``split`` (the folder holding ``annotations/`` and ``<split>/``) as an image folder."""

    split: str = "train2017"
    max_images: int = 0  # > 0: keep this many, evenly spaced (match another set's size)

    def problems(self, trial: Any) -> list[str]:
        return super().problems(trial) + self.max_images_problems()

    def validate(self, root: Path, needs: tuple[str, ...]) -> None:
        from datasets.coco import validate_coco_root

        validate_coco_root(root, self.split)

    def resolve(self, trial: Any) -> Path:
        return self.image_folder(super().resolve(trial), self.split, trial)


@DATA_SOURCES.register
@dataclass(frozen=True)
class CocoScenes(CocoView):
    """COCO's whole images (``train/scene/``): scene-centric pretraining data."""

    name: ClassVar[str] = "coco-scenes"
    view: ClassVar[str] = "scenes"


@DATA_SOURCES.register
@dataclass(frozen=True)
class CocoBoxes(CocoView):
    """COCO's non-crowd boxes with both sides >= ``min_box_side``, cut out (``train/<category>/``)."""

    name: ClassVar[str] = "coco-boxes"
    view: ClassVar[str] = "boxes"
    min_box_side: int = 8


# The VOC probe's scenes come from seed 0, the pretraining sets' from seed 1: disjoint images.
PROBE_SCENES_SEED = 0
PRETRAIN_SCENES_SEED = 1


@dataclass(frozen=True)
class SyntheticScenes(DataSource):
    """Settings of the generated scenes (datasets.synthetic.scenes), shared by the sources below."""

    classes: int = 6
    trainval: int = 300
    test: int = 300
    cooccurrence: float = 0.8  # probability that a scene's primary class brings its partner
    objects_per_scene: int = 2  # the mean; VOC 2007 has 2.5 objects per image
    scenes_seed: int = PROBE_SCENES_SEED  # the generator's seed (not the trial's)

    def problems(self, trial: Any) -> list[str]:
        from datasets.synthetic.scenes import MAX_OBJECTS_PER_SCENE
        from datasets.synthetic.shapes import CATEGORIES

        out = [] if 2 <= self.classes <= len(CATEGORIES) else [f"classes={self.classes} must be from 2 to {len(CATEGORIES)}"]
        out += [f"{k}={getattr(self, k)} must be at least 2" for k in ("trainval", "test") if getattr(self, k) < 2]
        if not 0.0 <= self.cooccurrence <= 1.0:
            out.append(f"cooccurrence={self.cooccurrence} must be in [0, 1]")
        if not 1 <= self.objects_per_scene <= MAX_OBJECTS_PER_SCENE:
            out.append(f"objects_per_scene={self.objects_per_scene} must be from 1 to {MAX_OBJECTS_PER_SCENE} "
                       "(the mean number of objects in a scene)")
        return out

    def scenes_root(self, trial: Any) -> Path:
        from datasets.synthetic.scenes import ensure_synthetic_scenes

        return ensure_synthetic_scenes(num_classes=self.classes, trainval=self.trainval, test=self.test,
                                       image_size=2 * int(trial.image_size), cooccurrence=self.cooccurrence,
                                       seed=self.scenes_seed, cache=str(trial.data_cache),
                                       objects_per_scene=self.objects_per_scene)


@dataclass(frozen=True)
class SyntheticPretrainScenes(SyntheticScenes):
    """Scenes for pretraining: COCO-like density, and a seed no probe's scenes use (a trial
    whose probe scenes share ``scenes_seed`` is rejected: the same seed draws the same
    backgrounds and layouts, so the pretraining set would hold the probe's images)."""

    test: int = 2  # pretraining reads train2017 only
    objects_per_scene: int = 7  # COCO's mean (7.3 instances per image)
    scenes_seed: int = PRETRAIN_SCENES_SEED

    def problems(self, trial: Any) -> list[str]:
        out = super().problems(trial)
        for role, source in getattr(trial, "data", {}).items():
            if (isinstance(source, SyntheticScenes) and not isinstance(source, SyntheticPretrainScenes)
                    and source.scenes_seed == self.scenes_seed):
                out.append(f"scenes_seed={self.scenes_seed} is data.{role}'s ({source.name}): the pretraining "
                           f"scenes would be that probe's own images; set another seed")
        return out

@DATA_SOURCES.register
@dataclass(frozen=True)
class SyntheticVoc(SyntheticScenes):
    name: ClassVar[str] = "synthetic-voc"
    layout: ClassVar[str] = VOC2007

    def resolve(self, trial: Any) -> Path:
        return self.scenes_root(trial) / "VOC2007"


@DATA_SOURCES.register
@dataclass(frozen=True)
class SyntheticAde20k(SyntheticScenes):
    name: ClassVar[str] = "synthetic-ade20k"
    layout: ClassVar[str] = ADE20K

    def resolve(self, trial: Any) -> Path:
        return self.scenes_root(trial) / "ADEChallengeData2016"


@dataclass(frozen=True)
class SyntheticCocoView(CocoImageFolder, SyntheticPretrainScenes):
    """The synthetic scenes' COCO ``train2017`` as an image folder (see ``CocoView``)."""

    max_images: int = 0

    def problems(self, trial: Any) -> list[str]:
        return super().problems(trial) + self.max_images_problems()

    def num_images(self, split: str) -> int | None:
        if self.view == "scenes":
            return min(self.trainval, self.max_images or self.trainval)
        return self.max_images or None

    def resolve(self, trial: Any) -> Path:
        return self.image_folder(self.scenes_root(trial) / "coco", "train2017", trial)


@DATA_SOURCES.register
@dataclass(frozen=True)
class SyntheticCocoScenes(SyntheticCocoView):
    name: ClassVar[str] = "synthetic-coco-scenes"
    view: ClassVar[str] = "scenes"


@DATA_SOURCES.register
@dataclass(frozen=True)
class SyntheticCocoBoxes(SyntheticCocoView):
    name: ClassVar[str] = "synthetic-coco-boxes"
    view: ClassVar[str] = "boxes"
    min_box_side: int = 8


@DATA_SOURCES.register
@dataclass(frozen=True)
class SyntheticCocoObjects(SyntheticPretrainScenes):
    """The object-centric twin of ``synthetic-coco-scenes`` (same settings): one image per
    scene, showing one of its objects alone and centred, in ``train/<class>/``."""

    name: ClassVar[str] = "synthetic-coco-objects"
    layout: ClassVar[str] = IMAGE_FOLDER

    def num_images(self, split: str) -> int | None:
        return self.trainval if split == "train" else None

    def resolve(self, trial: Any) -> Path:
        from datasets.synthetic.scenes import ensure_centred_objects

        return ensure_centred_objects(num_classes=self.classes, images=self.trainval,
                                      image_size=2 * int(trial.image_size), cooccurrence=self.cooccurrence,
                                      seed=self.scenes_seed, cache=str(trial.data_cache),
                                      objects_per_scene=self.objects_per_scene)
