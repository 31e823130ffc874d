"""Importing this module registers every built-in model."""

from . import cnn9, densenet, resnet, small, vgg, wrn  # noqa: F401
