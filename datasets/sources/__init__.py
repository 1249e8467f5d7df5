"""Data sources, registered by name in ``DATA_SOURCES`` (see ``datasets.sources.base``).

Importing this package registers the built-in sources: ``image-folder`` and ``aloi``
(real roots) and ``synthetic-objects`` and ``synthetic-aloi`` (generated).
"""
from datasets.sources import real, synthetic  # noqa: F401  (registration)
from datasets.sources.base import ALOI, DATA_SOURCES, IMAGE_FOLDER, DataRole, DataSource, split_dir

__all__ = ["ALOI", "DATA_SOURCES", "IMAGE_FOLDER", "DataRole", "DataSource", "split_dir"]
