"""Real dataset roots in their published layouts: class folders (ImageNet-style), ALOI,
GOT-10k and PASCAL3D+."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.errors import DatasetFormatError
from datasets.sources.base import ALOI, DATA_SOURCES, GOT10K, IMAGE_FOLDER, PASCAL3D, DataSource, existing_dir


@dataclass(frozen=True)
class RealRoot(DataSource):
    """A dataset on disk at ``root``; ``validate`` is its layout's fast structural check."""

    root: str = ""

    def problems(self, trial: Any) -> list[str]:
        return [] if self.root else [f"root is not set: point it at the {self.name} dataset's folder"]

    def resolve(self, trial: Any) -> Path:
        return existing_dir(self.root, self.name)

    def check_root(self, needs: tuple[str, ...]) -> list[str]:
        if not self.root:
            return []  # (reported by `problems`)
        try:
            self.validate(existing_dir(self.root, self.name), needs)
        except DatasetFormatError as err:
            return [str(err)]
        return []

    def validate(self, root: Path, needs: tuple[str, ...]) -> None:
        raise NotImplementedError


@DATA_SOURCES.register
@dataclass(frozen=True)
class ImageFolderSource(RealRoot):
    """An ImageNet-style root: ``<root>/train/<class>/<image>``, ``<root>/val/...``."""

    name: ClassVar[str] = "image-folder"
    layout: ClassVar[str] = IMAGE_FOLDER

    def validate(self, root: Path, needs: tuple[str, ...]) -> None:
        from datasets.image_folder import validate_image_folder_root

        for split in needs:
            validate_image_folder_root(root / split)


@DATA_SOURCES.register
@dataclass(frozen=True)
class AloiSource(RealRoot):
    """An ALOI root: the folder holding ``png4/`` (or ``png2/``, ``png/``)."""

    name: ClassVar[str] = "aloi"
    layout: ClassVar[str] = ALOI

    def validate(self, root: Path, needs: tuple[str, ...]) -> None:
        from datasets.aloi import validate_aloi_root

        validate_aloi_root(root)


@DATA_SOURCES.register
@dataclass(frozen=True)
class Got10kSource(RealRoot):
    """A GOT-10k root: the folder holding ``train/`` (``val/``, ``test/``), each with ``list.txt``."""

    name: ClassVar[str] = "got10k"
    layout: ClassVar[str] = GOT10K

    def validate(self, root: Path, needs: tuple[str, ...]) -> None:
        from datasets.got10k import validate_got10k_root

        validate_got10k_root(root)


@DATA_SOURCES.register
@dataclass(frozen=True)
class Pascal3DSource(RealRoot):
    """A PASCAL3D+ release 1.1 root: the folder holding ``Annotations/`` and ``Images/``."""

    name: ClassVar[str] = "pascal3d"
    layout: ClassVar[str] = PASCAL3D

    def validate(self, root: Path, needs: tuple[str, ...]) -> None:
        from datasets.pascal3d import validate_pascal3d_root

        validate_pascal3d_root(root)
