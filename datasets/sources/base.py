"""Data sources: where a role's data comes from (a real dataset root, or a generator).

A trial's parts read data in *roles*: the method reads ``pretrain``, the linear probe
``probe``, the ALOI invariance sets ``aloi``. Each consumer declares its roles with the
on-disk layout it reads (:class:`DataRole`); the trial config maps every role it uses
to one data source part (``data.<role>=<source>`` and ``data.<role>.<field>=...``), and
the config check rejects a source whose layout is not the one the role needs.

Protocol of a source: ``layout`` (what it yields), ``resolve(trial)`` (the root on
disk: located, or generated once into the cache), ``check_root(needs)`` (fast
structural checks of a real root, on the driver), ``num_images(split)`` (when known
without reading, for the advisories printed before a sweep) and ``figures(trial)`` (what
the trial logs about its data, e.g. a pool's shares).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets.errors import DatasetFormatError
from datasets.registry import Part, Registry

# The layouts readers understand (../shared/reference/datasets.md).
IMAGE_FOLDER = "image-folder"  # <root>/<split>/<class>/<image>
ALOI = "aloi"  # <root>/png4/<obj>/<obj>_<cond>.png
GOT10K = "got10k"  # <root>/<split>/<sequence>/00000001.jpg, groundtruth.txt, *.label, meta_info.ini
PASCAL3D = "pascal3d"  # <root>/Annotations/<cls>_{pascal,imagenet}/<id>.mat, <root>/Images/...
VOC2007 = "voc2007"  # [VOCdevkit/]VOC2007/{JPEGImages,Annotations,ImageSets/Main}/...
ADE20K = "ade20k"  # [ADEChallengeData2016/]{images,annotations}/{training,validation}/...

SOURCE_KEY = "source"  # the key naming a role's source in a data section ({"source": ..., settings})


@dataclass(frozen=True)
class DataRole:
    """What a part reads under one role: the layout, the source used when none is set,
    and the parts of the root it needs (e.g. the ``train`` and ``val`` splits)."""

    layout: str
    default_source: str
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataSource(Part):
    """A registered data source: one layout, a root on disk."""

    layout: ClassVar[str] = ""

    def resolve(self, trial: Any) -> Path:
        """The root that readers of `layout` open (generated first if needed)."""
        raise NotImplementedError

    def check_root(self, needs: tuple[str, ...]) -> list[str]:
        """Structural problems of a real root (cheap: runs on the driver); [] if none."""
        return []

    def num_images(self, split: str) -> int | None:
        """Images in `split`, when known without reading the root (a generator's settings)."""
        return None

    def figures(self, trial: Any) -> dict[str, float]:
        """Figures of the data this source serves, logged as ``data/<role>/<name>`` (none by default)."""
        return {}


DATA_SOURCES: Registry[type[DataSource]] = Registry("data source", DataSource, package=__package__)


def existing_dir(path: str, what: str) -> Path:
    """`path` as a folder that exists, or a DatasetFormatError naming it."""
    if not path:
        raise DatasetFormatError(f"{what}: no root given (set its .root)")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DatasetFormatError(f"{folder}: dataset root does not exist or is not a folder")
    return folder


def split_dir(root: Path, split: str) -> Path:
    """`<root>/<split>`, which must exist."""
    path = Path(root) / split
    if not path.is_dir():
        raise DatasetFormatError(f"{path}: missing the '{split}/' folder of an ImageNet-style dataset root")
    return path
