"""Synthetic stand-ins for the real datasets, written in the real on-disk layouts.

Procedural 3-D objects (``shapes``) rendered by a small OpenCV rasteriser (``render``)
into a turntable set in ALOI's layout (``turntable``) and an object-centric set in
ImageNet's class-folder layout (``objects``). Deterministic from a seed and generated
once into a cache folder (``datasets.cache``).
"""
from datasets.synthetic.objects import ensure_synthetic_objects, write_object_folders
from datasets.synthetic.shapes import CATEGORIES
from datasets.synthetic.turntable import ensure_synthetic_aloi, write_aloi

__all__ = ["CATEGORIES", "ensure_synthetic_aloi", "ensure_synthetic_objects", "write_aloi", "write_object_folders"]
