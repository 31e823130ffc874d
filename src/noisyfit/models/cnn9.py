"""Co-teaching's 9-layer CNN (Han et al., 2018; official ``model.py``, spec §8.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import MODELS
from .small import Classifier, _channels


def _conv_bn_lrelu(cin: int, cout: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=padding),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.01, inplace=True),
    )


class _ValidConv(nn.Module):
    """A 3×3 "valid" (unpadded) conv-BN-LeakyReLU that never shrinks a map below 1×1.

    A map smaller than 3 in a dimension is zero-padded (evenly, extra pixel at the end) up to 3
    first, so the output is 1 there. Maps of size ≥ 3 are not padded: identical to the original.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.block = _conv_bn_lrelu(cin, cout, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = max(0, 3 - h), max(0, 3 - w)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return self.block(x)


class CNN9(Classifier):
    """Co-teaching's 9-layer CNN.

    conv3×3 128 ×3 → max-pool 2 → Dropout2d 0.25 → conv3×3 256 ×3 → max-pool 2 → Dropout2d 0.25
    → conv3×3 512, 256, 128 (valid) → global average pooling → linear K; every conv (with bias)
    is followed by BN and LeakyReLU(0.01). ≈4.4M parameters for 3-channel inputs.

    Departures: (1) the original calls ``F.dropout2d`` without ``training=self.training``, so its
    dropout is also active at evaluation; here it is ``nn.Dropout2d`` (off in ``eval()``).
    (2) The valid convs pad a map smaller than 3×3 up to 3×3 (see ``_ValidConv``); for inputs of
    at least 28×28 the map before them is ≥ 7×7, so this never triggers and the network is the
    original one. (3) No ``top_bn`` option (off by default in the original).
    """

    def __init__(self, num_classes: int, in_channels: int, dropout: float = 0.25):
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_lrelu(in_channels, 128, 1),
            _conv_bn_lrelu(128, 128, 1),
            _conv_bn_lrelu(128, 128, 1),
            nn.MaxPool2d(2, 2),
            nn.Dropout2d(dropout),
            _conv_bn_lrelu(128, 256, 1),
            _conv_bn_lrelu(256, 256, 1),
            _conv_bn_lrelu(256, 256, 1),
            nn.MaxPool2d(2, 2),
            nn.Dropout2d(dropout),
            _ValidConv(256, 512),
            _ValidConv(512, 256),
            _ValidConv(256, 128),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(128, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@MODELS.register("cnn9")
def cnn9(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Co-teaching's 9-layer CNN (LeakyReLU, BN, Dropout2d 0.25), ≈4.4M params."""
    return CNN9(num_classes, _channels(input_shape, "cnn9"))
