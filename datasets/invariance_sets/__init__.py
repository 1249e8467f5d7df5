"""Invariance sets, registered by name in ``INVARIANCE_SETS`` (see ``base``).

Importing this package registers the built-in sets: ALOI's ``viewpoint``,
``illumination_direction`` and ``illumination_color``, GOT-10k's ``occlusion``, and
PASCAL3D+'s ``instance`` and ``instance_viewpoint``.
"""
from datasets.invariance_sets import aloi, got10k, pascal3d  # noqa: F401  (registration)
from datasets.invariance_sets.base import INVARIANCE_SETS, INVARIANCES, InvarianceSet, InvarianceSetPart

__all__ = ["INVARIANCE_SETS", "INVARIANCES", "InvarianceSet", "InvarianceSetPart"]
