"""Data sources, registered by name in ``DATA_SOURCES`` (see ``datasets.sources.base``).

Importing this package registers the built-in sources: ``image-folder``, ``aloi``,
``got10k``, ``pascal3d``, ``video``, ``voc2007``, ``ade20k``, ``coco-scenes`` and
``coco-boxes`` (real roots) and ``synthetic-objects``, ``synthetic-aloi``,
``synthetic-got10k``, ``synthetic-pascal3d``, ``synthetic-video``, ``synthetic-voc``,
``synthetic-ade20k``, ``synthetic-coco-scenes``, ``synthetic-coco-boxes`` and
``synthetic-coco-objects`` (generated).
"""
from datasets.sources import real, scenes, synthetic, video  # noqa: F401  (registration)
from datasets.sources.base import (ADE20K, ALOI, DATA_SOURCES, GOT10K, IMAGE_FOLDER, PASCAL3D, VOC2007, DataRole,
                                   DataSource, split_dir)
from datasets.sources.video import VIDEO

__all__ = ["ADE20K", "ALOI", "DATA_SOURCES", "GOT10K", "IMAGE_FOLDER", "PASCAL3D", "VIDEO", "VOC2007", "DataRole",
           "DataSource", "split_dir"]
