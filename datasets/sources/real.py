"""Real dataset roots in their published layouts: class folders (ImageNet-style) and ALOI."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.errors import DatasetFormatError
from datasets.sources.base import ALOI, DATA_SOURCES, IMAGE_FOLDER, DataSource, existing_dir


@DATA_SOURCES.register
@dataclass(frozen=True)
class ImageFolderSource(DataSource):
    """An ImageNet-style root: ``<root>/train/<class>/<image>``, ``<root>/val/...``."""

    name: ClassVar[str] = "image-folder"
    layout: ClassVar[str] = IMAGE_FOLDER
    root: str = ""

    def resolve(self, trial: Any) -> Path:
        return existing_dir(self.root, self.name)

    def check_root(self, needs: tuple[str, ...]) -> list[str]:
        from datasets.image_folder import validate_image_folder_root

        try:
            root = existing_dir(self.root, self.name)
            for split in needs:
                validate_image_folder_root(root / split)
        except DatasetFormatError as err:
            return [str(err)]
        return []


@DATA_SOURCES.register
@dataclass(frozen=True)
class AloiSource(DataSource):
    """An ALOI root: the folder holding ``png4/`` (or ``png2/``, ``png/``)."""

    name: ClassVar[str] = "aloi"
    layout: ClassVar[str] = ALOI
    root: str = ""

    def resolve(self, trial: Any) -> Path:
        return existing_dir(self.root, self.name)

    def check_root(self, needs: tuple[str, ...]) -> list[str]:
        from datasets.aloi import validate_aloi_root

        try:
            validate_aloi_root(existing_dir(self.root, self.name))
        except DatasetFormatError as err:
            return [str(err)]
        return []
