"""Model registry. Every builder has the signature

    builder(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module

with ``input_shape`` = (C, H, W) for images or (D,) for feature vectors, and every model obeys
one contract: ``forward_features(x) -> (b, F)`` penultimate features, ``head`` the final
``nn.Linear(F, num_classes)``, ``forward(x) = head(forward_features(x))``. Methods that need
features (D2L's LID, embeddings for label-issue search) rely on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..registry import Registry

MODELS = Registry("model", builtin="noisyfit.models._builtin")


def build_model(name: str, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
    """Build the registered model ``name`` for ``num_classes`` classes and ``input_shape``."""
    return MODELS.get(name)(num_classes, tuple(input_shape))


__all__ = ["MODELS", "build_model"]
