"""Pretraining methods, registered by name in ``METHODS`` (see ``base``).

Importing this package registers the built-in methods ``mocov2`` and ``supervised``.
"""
from trainables.methods import mocov2, supervised  # noqa: F401  (registration)
from trainables.methods.base import METHODS, Method

__all__ = ["METHODS", "Method"]
