"""Models that are not registered: a user's ``nn.Module`` factory or instance, and torchvision
models with weights from a local file (pretrained backbones cannot be downloaded everywhere).

A model factory has the registry's signature ``(num_classes, input_shape) -> nn.Module``,
``input_shape`` = (C, H, W) or (D,). Methods that need penultimate features (D2L) need the
model contract of :mod:`noisyfit.models` (``forward_features``); the others need only
``forward(x) -> (b, K)`` logits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from ..errors import ConfigError, MissingFileError

#: The prefix naming a torchvision model, e.g. ``torchvision:resnet18``.
TORCHVISION = "torchvision:"

ModelFactory = Callable[[int, tuple[int, ...]], nn.Module]


def _replace_head(m: nn.Module, num_classes: int, name: str) -> nn.Module:
    """Swap the last ``nn.Linear`` of a torchvision classifier (``fc``, ``classifier``,
    ``heads.head``, ``head``) for a fresh one with ``num_classes`` outputs."""
    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(m, attr, None)
        if isinstance(head, nn.Linear):
            setattr(m, attr, nn.Linear(head.in_features, num_classes))
            return m
        if isinstance(head, nn.Sequential):
            for i in reversed(range(len(head))):
                if isinstance(head[i], nn.Linear):
                    head[i] = nn.Linear(head[i].in_features, num_classes)
                    return m
    raise ConfigError(
        f"torchvision model {name!r}: no final nn.Linear found in fc/classifier/heads; "
        "pass your own factory (num_classes, input_shape) -> nn.Module instead"
    )


class _GrayToRGB(nn.Module):
    """Repeats a 1-channel image to the 3 channels an ImageNet backbone expects."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


def torchvision_model(name: str, weights: str | Path | None = None) -> ModelFactory:
    """A factory for torchvision model ``name`` (e.g. ``resnet18``), its weights loaded from
    the local file ``weights`` (a ``state_dict`` saved with ``torch.save``; None: random
    initialization) and its final linear layer replaced for the dataset's classes.

    1-channel images are repeated to 3 channels. The file is read on each call (one network
    per call, as methods with two networks need).
    """
    if name not in torchvision.models.list_models():
        raise ConfigError(
            f"unknown torchvision model {name!r}; choose from torchvision.models.list_models(), "
            "e.g. resnet18, mobilenet_v3_small"
        )
    if weights is not None and not Path(weights).is_file():
        raise MissingFileError(
            f"{weights}: weights file not found; save one with "
            f"torch.save(torchvision.models.{name}(weights=...).state_dict(), PATH)"
        )

    def build(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        if len(input_shape) != 3:
            raise ConfigError(
                f"torchvision model {name!r} needs images (C, H, W); the data has "
                f"feature vectors of shape {tuple(input_shape)}: use model='mlp'"
            )
        m = torchvision.models.get_model(name, weights=None)
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            try:
                m.load_state_dict(state)
            except RuntimeError as e:
                raise ConfigError(
                    f"{weights}: not a state_dict of torchvision's {name} ({str(e)[:200]})"
                ) from e
        m = _replace_head(m, num_classes, name)
        return _GrayToRGB(m) if input_shape[0] == 1 else m

    return build


def as_model_factory(model: Any, weights: str | Path | None = None) -> ModelFactory | None:
    """A factory for ``model``, or None when it is a registered model name.

    ``model``: a registered name (None returned: the registry builds it), ``torchvision:NAME``
    (with ``weights``, a local file), a factory ``(num_classes, input_shape) -> nn.Module``,
    or an ``nn.Module`` (each call returns a deep copy, its weights as given: for methods with
    two networks, such as Co-teaching, a factory gives them different initializations).
    """
    if isinstance(model, str):
        if model.startswith(TORCHVISION):
            return torchvision_model(model[len(TORCHVISION) :], weights)
        if weights is not None:
            raise ConfigError(
                f"weights={weights!s} applies to model='torchvision:NAME', not {model!r}"
            )
        return None
    if isinstance(model, nn.Module):
        proto = model

        def copy_of(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
            return copy.deepcopy(proto)

        return copy_of
    if callable(model):
        return model
    raise ConfigError(
        f"model must be a registered name, 'torchvision:NAME', an nn.Module or a factory "
        f"(num_classes, input_shape) -> nn.Module; got {type(model).__name__}"
    )
