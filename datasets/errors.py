"""Errors raised by the dataset readers and generators."""
from __future__ import annotations


class DatasetFormatError(ValueError):
    """A dataset on disk is missing or does not follow the expected layout.

    The message names the offending path and what is wrong with it, so a user who
    points the project at a real dataset root can fix the path or the layout.
    """
