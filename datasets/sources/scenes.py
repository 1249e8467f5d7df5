"""Scene data sources: Pascal VOC 2007, ADE20K SceneParsing and COCO's scenes or boxes
(real roots), and the synthetic scenes that write those layouts (datasets.synthetic.scenes).

COCO feeds pretraining, which reads ImageNet-style folders: ``coco-scenes`` is the
split's whole images, ``coco-boxes`` its annotated boxes cut out (paper Sec. 4.3, Table 2),
each built once as a folder in the cache (``datasets.coco.coco_image_folder``).

The synthetic sources all read one generated set of scenes (same settings, same images):
VOC ``trainval`` = COCO ``train2017`` = ADE ``training``, rendered at twice the trial's
``image_size`` (scenes are larger than the network's input, as COCO's are).
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


@dataclass(frozen=True)
class SyntheticScenes(DataSource):
    """Settings of the generated scenes (datasets.synthetic.scenes), shared by the sources below."""

    classes: int = 6
    trainval: int = 300
    test: int = 300
    cooccurrence: float = 0.8  # probability that a scene's primary class brings its partner

    def problems(self, trial: Any) -> list[str]:
        from datasets.synthetic.shapes import CATEGORIES

        out = [] if 2 <= self.classes <= len(CATEGORIES) else [f"classes={self.classes} must be from 2 to {len(CATEGORIES)}"]
        out += [f"{k}={getattr(self, k)} must be at least 2" for k in ("trainval", "test") if getattr(self, k) < 2]
        if not 0.0 <= self.cooccurrence <= 1.0:
            out.append(f"cooccurrence={self.cooccurrence} must be in [0, 1]")
        return out

    def scenes_root(self, trial: Any) -> Path:
        from datasets.synthetic.scenes import ensure_synthetic_scenes

        return ensure_synthetic_scenes(num_classes=self.classes, trainval=self.trainval, test=self.test,
                                       image_size=2 * int(trial.image_size), cooccurrence=self.cooccurrence,
                                       cache=str(trial.data_cache))


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
class SyntheticCocoView(CocoImageFolder, SyntheticScenes):
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
