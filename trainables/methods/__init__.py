"""Pretraining methods, registered by name in ``METHODS`` (see ``base``).

Importing this package registers the built-in methods ``mocov2``, ``simclr``, ``byol``,
``supcon``, ``pirl`` and ``supervised``, and the video methods (paper Sec. 5)
``mocov2_frames``, ``fti``, ``region_tracker`` and ``gt_tracks``.
"""
from trainables.methods import (byol, fti, gt_tracks, mocov2, mocov2_frames, pirl, region_tracker, simclr,  # noqa: F401
                                supcon, supervised)
from trainables.methods.base import METHODS, Method, StepOutput

__all__ = ["METHODS", "Method", "StepOutput"]
