"""SELFIE's VGG-19 with batch normalisation (``SELFIE/network/VGG/VGG19.py``, spec §8.2)."""

from __future__ import annotations

import math

import torch
from torch import nn

from . import MODELS
from .small import Classifier, _channels

_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


class VGG19(Classifier):
    """VGG-19 as in SELFIE.

    16 conv3×3 layers (with bias) in blocks 64×2, 128×2, 256×4, 512×4, 512×4, each followed by BN
    and ReLU, a 2×2/2 max-pool after every block; then FC 4096 → BN → ReLU → Dropout(0.5) → FC
    4096 → BN → ReLU → Dropout(0.5) (the penultimate features) and ``head`` = FC K. ≈38.9M
    parameters for 10 classes. Conv weights ~ N(0, sqrt(2 / (9·out_channels))) with zero bias
    (tensorpack's ``W_init`` in SELFIE's ``utils.conv``); FC weights He-normal (fan-in) with zero
    bias (tensorpack's ``FullyConnected`` default); BN momentum 0.1 (TF decay 0.9), eps 1e-5.

    Departures: the max-pools use ``ceil_mode=True``, which gives TF's ``SAME`` output sizes
    (28×28 → 14, 7, 4, 2, 1), and an ``AdaptiveAvgPool2d(1)`` precedes the flatten so any input
    size ≥ 28×28 works; for 28×28 and 32×32 inputs the map is already 1×1 there, so the network
    is the original one. (The original flattens the last map, so its first FC has 512·h·w inputs
    for larger images.)
    """

    def __init__(self, num_classes: int, in_channels: int, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for width, n in _BLOCKS:
            for _ in range(n):
                conv = nn.Conv2d(c, width, 3, padding=1, bias=True)
                nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (9 * width)))
                nn.init.zeros_(conv.bias)
                layers += [conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                c = width
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        fc1, fc2 = nn.Linear(c, 4096), nn.Linear(4096, 4096)
        self.classifier = nn.Sequential(
            fc1,
            nn.BatchNorm1d(4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            fc2,
            nn.BatchNorm1d(4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(4096, num_classes)
        for fc in (fc1, fc2, self.head):
            nn.init.kaiming_normal_(fc.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


@MODELS.register("vgg19")
def vgg19(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """SELFIE's VGG-19 with BN (16 conv + 2 FC-4096 layers), ≈38.9M params."""
    return VGG19(num_classes, _channels(input_shape, "vgg19"))
