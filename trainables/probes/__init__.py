"""Probes on frozen features, registered by name in ``PROBES`` (see ``base``).

Importing this package registers the built-in probe ``linear`` (``probe/linear_top1``).
"""
from trainables.probes.base import PROBES, Probe
from trainables.probes.linear import LinearProbe, linear_probe_top1

__all__ = ["PROBES", "LinearProbe", "Probe", "linear_probe_top1"]
