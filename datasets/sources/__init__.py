"""Data sources, registered by name in ``DATA_SOURCES`` (see ``datasets.sources.base``).

Importing this package registers the built-in sources: ``image-folder``, ``aloi``,
``got10k``, ``pascal3d`` and ``video`` (real roots) and ``synthetic-objects``,
``synthetic-aloi``, ``synthetic-got10k``, ``synthetic-pascal3d`` and ``synthetic-video``
(generated).
"""
from datasets.sources import real, synthetic, video  # noqa: F401  (registration)
from datasets.sources.base import ALOI, DATA_SOURCES, GOT10K, IMAGE_FOLDER, PASCAL3D, DataRole, DataSource, split_dir
from datasets.sources.video import VIDEO

__all__ = ["ALOI", "DATA_SOURCES", "GOT10K", "IMAGE_FOLDER", "PASCAL3D", "VIDEO", "DataRole", "DataSource", "split_dir"]
