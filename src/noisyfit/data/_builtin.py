"""Importing this module registers every built-in dataset."""

from . import cifar, folder, idx, synthetic, webvision  # noqa: F401
