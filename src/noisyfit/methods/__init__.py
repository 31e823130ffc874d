"""Training methods: the contract (``base``) and one file per method."""

from .base import METHODS, ConfigError, Context, Method, StepOutput, build_method, method_config

__all__ = ["METHODS", "ConfigError", "Context", "Method", "StepOutput", "build_method",
           "method_config"]
