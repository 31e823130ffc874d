"""SELFIE's DenseNet (tensorpack; ``SELFIE/network/DenseNet/{DenseNet,utils}.py``, spec §8.1)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from . import MODELS
from .small import Classifier, _channels


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    """3×3 conv without bias, weights ~ N(0, sqrt(2 / (9·cout))) (tensorpack fan-out init)."""
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (9 * cout)))
    return conv


class _DenseLayer(nn.Module):
    """BN → ReLU → conv3×3 (k channels) → Dropout → concatenate ``[new, input]``."""

    def __init__(self, cin: int, growth: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), _conv3x3(cin, growth), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.body(x), x], dim=1)


def _transition(c: int, dropout: float) -> nn.Sequential:
    """BN → ReLU → conv1×1 (same channels, no bias) → ReLU → Dropout → 2×2 average pool."""
    conv = nn.Conv2d(c, c, 1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")  # tensorpack default
    return nn.Sequential(
        nn.BatchNorm2d(c),
        nn.ReLU(inplace=True),
        conv,
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.AvgPool2d(2),
    )


class DenseNet(Classifier):
    """DenseNet-L-k as in SELFIE (no bottleneck, compression 1).

    Stem conv3×3 16 channels (no bias); three dense blocks of N = int((L − 4) / 3) layers
    (BN-ReLU-conv3×3(k)-Dropout, concatenated), two transitions (BN-ReLU-conv1×1 keeping the
    channels-ReLU-Dropout-avgpool 2); head BN-ReLU-global average pool (the features) and FC K.
    3×3 conv weights ~ N(0, sqrt(2 / (9·out_channels))); the 1×1 transition convs and the FC use
    tensorpack's default He-normal (fan-in) init, FC bias 0. BN momentum 0.1 (TF decay 0.9),
    eps 1e-5. Dropout is element-wise, as tensorpack's ``Dropout``.

    Departure: the original fixes the input placeholder to 32×32 (``height = width = 32``); here
    any size and channel count work (global pooling is size-independent, the 2×2 pools floor).
    """

    def __init__(
        self, depth: int, growth: int, num_classes: int, in_channels: int, dropout: float = 0.2
    ):
        super().__init__()
        n = int((depth - 4) / 3)
        if n < 1:
            raise ConfigError(f"DenseNet depth must be ≥ 7 (one layer per block); got {depth}")
        self.depth, self.growth, self.layers_per_block = depth, growth, n
        c = 16
        layers: list[nn.Module] = [_conv3x3(in_channels, c)]
        for block in range(3):
            for _ in range(n):
                layers.append(_DenseLayer(c, growth, dropout))
                c += growth
            if block < 2:
                layers.append(_transition(c, dropout))
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)
        nn.init.kaiming_normal_(self.head.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def densenet(
    depth: int, growth: int, num_classes: int, in_channels: int, dropout: float = 0.2
) -> DenseNet:
    """SELFIE's DenseNet with depth ``depth`` (N = int((depth − 4) / 3) layers per block)."""
    return DenseNet(depth, growth, num_classes, in_channels, dropout)


@MODELS.register("densenet-10-12")
def densenet_10_12(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """SELFIE DenseNet L=10, k=12 (2 layers per block), ≈0.04M params."""
    return densenet(10, 12, num_classes, _channels(input_shape, "densenet-10-12"))


@MODELS.register("densenet-25-12")
def densenet_25_12(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """SELFIE DenseNet L=25, k=12 (7 layers per block; the papers' "L=24"), ≈0.36M params."""
    return densenet(25, 12, num_classes, _channels(input_shape, "densenet-25-12"))


@MODELS.register("densenet-40-12")
def densenet_40_12(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """SELFIE DenseNet L=40, k=12 (12 layers per block), ≈1.0M params."""
    return densenet(40, 12, num_classes, _channels(input_shape, "densenet-40-12"))
