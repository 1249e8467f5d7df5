"""Data sources, registered by name in ``DATA_SOURCES`` (see ``datasets.sources.base``).

Importing this package registers the built-in sources: ``image-folder``, ``aloi``,
``got10k`` and ``pascal3d`` (real roots) and ``synthetic-objects``, ``synthetic-aloi``,
``synthetic-got10k`` and ``synthetic-pascal3d`` (generated).
"""
from datasets.sources import real, synthetic  # noqa: F401  (registration)
from datasets.sources.base import ALOI, DATA_SOURCES, GOT10K, IMAGE_FOLDER, PASCAL3D, DataRole, DataSource, split_dir

__all__ = ["ALOI", "DATA_SOURCES", "GOT10K", "IMAGE_FOLDER", "PASCAL3D", "DataRole", "DataSource", "split_dir"]
