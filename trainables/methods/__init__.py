"""Pretraining methods, registered by name in ``METHODS`` (see ``base``).

Importing this package registers the built-in method ``mocov2``.
"""
from trainables.methods import mocov2  # noqa: F401  (registration)
from trainables.methods.base import METHODS, Method

__all__ = ["METHODS", "Method"]
