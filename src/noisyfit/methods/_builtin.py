"""Importing this module registers every built-in method."""

from . import standard  # noqa: F401
