"""Training methods: the contract (``base``) and one file per method."""

from .base import (
    METHODS,
    ConfigError,
    Context,
    Method,
    StepOutput,
    build_method,
    method_config,
    small_loss_mask,
)

__all__ = [
    "METHODS",
    "ConfigError",
    "Context",
    "Method",
    "StepOutput",
    "build_method",
    "small_loss_mask",
    "method_config",
]
