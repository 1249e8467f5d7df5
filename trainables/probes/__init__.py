"""Probes on frozen features, registered by name in ``PROBES`` (see ``base``).

Importing this package registers the built-in probes: ``linear`` (``probe/linear_top1``),
``voc07`` (``probe/voc07_map``), ``voc07_boxes`` (``probe/voc07_boxes_map``) and ``seg``
(``probe/seg_miou``, ``probe/seg_pixel_acc``).
"""
from trainables.probes.base import PROBES, Probe
from trainables.probes.linear import LinearProbe, linear_probe_top1
from trainables.probes.seg import SegmentationProbe
from trainables.probes.svm import svm_map, voc07_average_precision
from trainables.probes.voc07 import Voc07BoxesProbe, Voc07Probe

__all__ = ["PROBES", "LinearProbe", "Probe", "SegmentationProbe", "Voc07BoxesProbe", "Voc07Probe", "linear_probe_top1",
           "svm_map", "voc07_average_precision"]
