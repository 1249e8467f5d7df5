"""Invariance sets, registered by name in ``INVARIANCE_SETS`` (see ``base``).

Each module here is found without a list (``datasets.registry.import_parts``): ALOI's
``viewpoint``, ``illumination_direction`` and ``illumination_color``, GOT-10k's
``occlusion``, and PASCAL3D+'s ``instance`` and ``instance_viewpoint``.
"""
from datasets.invariance_sets.base import INVARIANCE_SETS, INVARIANCES, InvarianceSet, InvarianceSetPart

__all__ = ["INVARIANCE_SETS", "INVARIANCES", "InvarianceSet", "InvarianceSetPart"]
