"""IEG's Wide ResNet (``ieg/models/wrn.py``, AutoAugment-style WRN; spec §8.5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from . import MODELS
from .small import Classifier, _channels


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    """Bias-free conv, weights ~ N(0, sqrt(2 / (k·k·cout))) (IEG's ``custom_ops.conv2d``)."""
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (kernel * kernel * cout)))
    return conv


def _pool_pad(x: torch.Tensor, stride: int, cout: int) -> torch.Tensor:
    """IEG's parameter-free shortcut: ``stride``×``stride`` average pool, then zero channels
    padded equally on both sides (the odd one, if any, at the end) up to ``cout``."""
    if stride > 1:
        x = F.avg_pool2d(x, stride, stride, ceil_mode=True)
    extra = cout - x.shape[1]
    if extra > 0:
        x = F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))
    return x


class _WideBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3×3(stride)-BN-ReLU-conv3×3 plus a shortcut.

    With ``activate_before_residual`` (first block of the network) the BN-ReLU is shared, i.e.
    the shortcut sees the activated input; otherwise it sees the raw input. The shortcut is the
    identity or, when the width changes, average pool + zero channel padding (no 1×1 conv).
    """

    def __init__(self, cin: int, cout: int, stride: int, activate_before_residual: bool):
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride
        self.activate_before_residual = activate_before_residual
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv(cin, cout, 3, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = _conv(cout, cout, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        orig = act if self.activate_before_residual else x
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        if self.cin != self.cout:
            orig = _pool_pad(orig, self.stride, self.cout)
        return orig + out


class WideResNet(Classifier):
    """Wide ResNet-d-w as in IEG (itself from the AutoAugment code).

    conv3×3 16; three stages of n = (d − 4) / 6 pre-activation blocks with 16w, 32w, 64w filters
    (strides 1, 2, 2); final BN → ReLU → global average pool (the features) → FC K. Shortcuts are
    parameter-free (average pool + zero channel padding, no 1×1 convs). On top of the block
    shortcuts there is an extra residual connection around every stage (stage input, pooled and
    zero-padded, added to the stage output) and one from the stem output to the end of the last
    stage (pooled by the total stride 4 and padded 16 → 64w) — as in IEG's ``_res_add``. Conv
    weights ~ N(0, sqrt(2 / (k·k·out))); FC weights ~ U(±1/sqrt(K)), bias 0 (IEG's
    ``custom_ops.fc``); BN momentum 0.1 (TF decay 0.9), eps 1e-5. WRN-28-10: ≈36.2M parameters
    for 10 classes (the usual WRN-28-10 has 36.5M, the difference being its three 1×1
    projection convs).

    Departure: the shortcut pools use ``ceil_mode=True`` so odd map sizes (e.g. 28 → 14 → 7 → the
    4-stride stem shortcut 28 → 7) match the 'same'-padded strided convs; the original uses
    'VALID' pooling, which agrees for sizes divisible by 4 (32×32) and breaks otherwise.
    (TF's 'SAME' stride-2 convs pad only bottom/right, PyTorch's pad 1 on each side: same sizes,
    a one-pixel shift in sampling.)
    """

    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ConfigError(f"WRN depth must be 6n+4 with n ≥ 1; got {depth}")
        n = (depth - 4) // 6
        k = 16 * widen
        self.filters = (min(k, 16), k, 2 * k, 4 * k)
        self.strides = (1, 2, 2)
        self.stem = _conv(in_channels, self.filters[0], 3, 1)
        self.stages = nn.ModuleList()
        for s in range(3):
            cin, cout = self.filters[s], self.filters[s + 1]
            blocks = [_WideBlock(cin, cout, self.strides[s], activate_before_residual=s == 0)]
            blocks += [_WideBlock(cout, cout, 1, False) for _ in range(n - 1)]
            self.stages.append(nn.Sequential(*blocks))
        c = self.filters[3]
        self.final = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = nn.Linear(c, num_classes)
        bound = 1.0 / math.sqrt(num_classes)
        nn.init.uniform_(self.head.weight, -bound, bound)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        first = orig = x
        for s, stage in enumerate(self.stages):
            x = stage(x)
            if self.filters[s] != self.filters[s + 1]:
                orig = _pool_pad(orig, self.strides[s], self.filters[s + 1])
            x = x + orig
            orig = x
        total_stride = math.prod(self.strides)
        if self.filters[0] != self.filters[3]:
            first = _pool_pad(first, total_stride, self.filters[3])
        x = x + first
        return self.final(x)


def wide_resnet(depth: int, widen: int, num_classes: int, in_channels: int) -> WideResNet:
    """IEG's WRN-``depth``-``widen`` (n = (depth − 4) / 6 blocks per stage)."""
    return WideResNet(depth, widen, num_classes, in_channels)


@MODELS.register("wrn28-10")
def wrn28_10(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """IEG's WRN-28-10 (16/160/320/640, extra stage residuals), ≈36.2M params."""
    return wide_resnet(28, 10, num_classes, _channels(input_shape, "wrn28-10"))


@MODELS.register("wrn10-1")
def wrn10_1(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Tiny IEG-style WRN-10-1 (one block per stage, 16/16/32/64) for tests."""
    return wide_resnet(10, 1, num_classes, _channels(input_shape, "wrn10-1"))
