"""Probes on frozen features, registered by name in ``PROBES`` (see ``base``).

Each module here is found without a list (``datasets.registry.import_parts``): ``linear``
(``probe/linear_top1``), ``finetune`` (``probe/finetune_top1_at_<N>``, trains a copy of
the backbone), ``voc07`` (``probe/voc07_map``), ``voc07_boxes``
(``probe/voc07_boxes_map``), ``seg`` (``probe/seg_miou``, ``probe/seg_pixel_acc``),
``block_shuffle`` (``probe/block_shuffle_b<b>_top1``) and ``alignment``
(``analysis/first_layer_alignment``).
"""
from trainables.probes.base import PROBES, Probe

__all__ = ["PROBES", "Probe"]
