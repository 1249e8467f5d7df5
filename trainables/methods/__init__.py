"""Pretraining methods, registered by name in ``METHODS`` (see ``base``).

Each module here is found without a list (``datasets.registry.import_parts``): the
built-in methods ``mocov2``, ``simclr``, ``byol``, ``supcon``, ``pirl``,
``supervised`` and ``supervised_random_labels``, and the video methods (paper Sec. 5) ``mocov2_frames``, ``fti``,
``region_tracker`` and ``gt_tracks``. A new method is one new module here, or one of a
user's own (docs/internals.md).
"""
from trainables.methods.base import METHODS, Method, StepOutput

__all__ = ["METHODS", "Method", "StepOutput"]
