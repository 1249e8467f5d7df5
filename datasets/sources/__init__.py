"""Data sources, registered by name in ``DATA_SOURCES`` (see ``datasets.sources.base``).

Each module here is found without a list (``datasets.registry.import_parts``): the
sources of real roots ``image-folder``, ``aloi``, ``got10k``, ``pascal3d``, ``video``,
``voc2007``, ``ade20k``, ``coco-scenes`` and ``coco-boxes``, and the generated
``synthetic-objects``, ``synthetic-aloi``, ``synthetic-got10k``, ``synthetic-pascal3d``,
``synthetic-video``, ``synthetic-voc``, ``synthetic-ade20k``, ``synthetic-coco-scenes``,
``synthetic-coco-boxes`` and ``synthetic-coco-objects``; and the image sets made from other
sources, ``video-frames`` (frames of a video source) and ``pooled`` (equal shares of several).
"""
from datasets.sources.base import (ADE20K, ALOI, DATA_SOURCES, GOT10K, IMAGE_FOLDER, PASCAL3D, VOC2007, DataRole,
                                   DataSource, split_dir)

__all__ = ["ADE20K", "ALOI", "DATA_SOURCES", "GOT10K", "IMAGE_FOLDER", "PASCAL3D", "VOC2007", "DataRole",
           "DataSource", "split_dir"]
