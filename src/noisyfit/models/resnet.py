"""ResNets: INCV's ResNet-32, the pre-activation ResNet-18 of the noisy-label literature, IEG's
ResNet-29 (pre-activation bottleneck, v2) and torchvision's ResNet-50 (spec §8.3, §8.5)."""

from __future__ import annotations

import math

import torch
import torchvision
from torch import nn

from ..errors import ConfigError
from . import MODELS
from .small import Classifier, _channels

# --------------------------------------------------------------------------------------------
# ResNet-32 (INCV, Keras)


class _BasicBlockV1(nn.Module):
    """INCV's ``building_block``: conv3×3-BN-ReLU-conv3×3-BN + shortcut, then ReLU.

    The shortcut is a 1×1 conv + BN projection when the stride is > 1 or the filters increase.
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1),
            nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride > 1 or cout > cin:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet32(Classifier):
    """INCV's ResNet-32 (``my_model.create_model(architecture='ResNet32')``).

    conv3×3 16 (with bias) → BN → ReLU; three stages of 5 basic blocks with 16, 32, 64 filters
    (stride 2 at the start of stages 2 and 3; 1×1 conv + BN projection shortcuts there); global
    average pooling (the features) → FC K. ≈0.47M parameters for 10 classes. All convs and the
    FC have biases and Glorot-uniform weights with zero bias (Keras defaults).

    Departure: BN uses PyTorch's defaults (momentum 0.1, eps 1e-5) instead of Keras's (0.99,
    1e-3); the per-layer L2 of the original (1e-4 on block convs) is left to the optimiser.
    """

    def __init__(self, num_classes: int, in_channels: int, blocks_per_stage: int = 5):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, 16, 3, 1, 1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        ]
        c = 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(blocks_per_stage):
                layers.append(_BasicBlockV1(c, width, 2 if stage > 0 and i == 0 else 1))
                c = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@MODELS.register("resnet32")
def resnet32(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """INCV's ResNet-32 (post-activation basic blocks 16/32/64), ≈0.47M params."""
    return ResNet32(num_classes, _channels(input_shape, "resnet32"))


# --------------------------------------------------------------------------------------------
# Pre-activation ResNet-18 (DivideMix's PreResNet18)


class _PreActBlock(nn.Module):
    """BN-ReLU → conv3×3 → BN-ReLU → conv3×3, plus a shortcut taken after the first BN-ReLU
    (a bias-free 1×1 conv when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        shortcut = self.shortcut(out)
        out = self.conv2(self.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet18(Classifier):
    """Pre-activation ResNet-18 for CIFAR, as in DivideMix's ``PreResNet.py`` (also used by ELR,
    UNICON and most later noisy-label papers; kuangliu/pytorch-cifar lineage).

    conv3×3 64 (no bias) → BN → ReLU; four stages of 2 pre-activation basic blocks with 64, 128,
    256, 512 filters (strides 1, 2, 2, 2); average pooling (the features) → FC K. Like DivideMix
    there is no final BN-ReLU before pooling. ≈11.17M parameters for 10 classes; PyTorch's
    default init.

    Departure: global average pooling instead of ``avg_pool2d(out, 4)`` (identical for 32×32
    inputs, and makes any size ≥ 28×28 work).
    """

    def __init__(self, num_classes: int, in_channels: int, blocks: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        ]
        c = 64
        for stage, (width, n) in enumerate(zip((64, 128, 256, 512), blocks)):
            for i in range(n):
                layers.append(_PreActBlock(c, width, 2 if stage > 0 and i == 0 else 1))
                c = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@MODELS.register("preact-resnet18")
def preact_resnet18(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Pre-activation ResNet-18 for CIFAR (DivideMix's PreResNet18), ≈11.17M params."""
    return PreActResNet18(num_classes, _channels(input_shape, "preact-resnet18"))


# --------------------------------------------------------------------------------------------
# ResNet-29 (IEG, Keras-example-style ResNet v2)


def _glorot_normal_(w: torch.Tensor) -> None:
    """TF's ``glorot_normal``: truncated (±2σ) normal, σ = sqrt(2 / (fan_in + fan_out)) / .8796."""
    receptive = w[0][0].numel() if w.dim() > 2 else 1
    fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
    std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
    nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std)


def _bn_act_conv(
    cin: int, cout: int, kernel: int, stride: int = 1, bn: bool = True, relu: bool = True
) -> nn.Sequential:
    """Keras ``resnet_layer(conv_first=False)``: [BN] → [ReLU] → conv (no bias, 'same')."""
    layers: list[nn.Module] = []
    if bn:
        layers.append(nn.BatchNorm2d(cin))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False))
    return nn.Sequential(*layers)


class _BottleneckV2(nn.Module):
    """IEG's bottleneck unit: 1×1 (stride s) → BN-ReLU-3×3 → BN-ReLU-1×1 (×4 or ×2 wider), plus
    an identity shortcut, or a plain 1×1 conv (stride s, no BN/ReLU) on the first unit of a stage.
    ``pre_bn``/``pre_relu`` control what precedes the first 1×1 conv (see ``ResNet29``)."""

    def __init__(
        self, cin: int, mid: int, cout: int, stride: int, pre_bn: bool, pre_relu: bool, first: bool
    ):
        super().__init__()
        self.body = nn.Sequential(
            _bn_act_conv(cin, mid, 1, stride, bn=pre_bn, relu=pre_relu),
            _bn_act_conv(mid, mid, 3),
            _bn_act_conv(mid, cout, 1),
        )
        self.shortcut: nn.Module = nn.Identity()
        if first:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)


class ResNet29(Classifier):
    """IEG's ResNet-29 (``ieg/models/cifar10_resnet.py``; Keras ``cifar10_resnet.py`` v2 style).

    conv3×3 16 → BN → ReLU; three stages of ``(depth − 2) / 9`` = 3 pre-activation bottleneck
    units with output widths 64, 128, 256 (bottleneck widths 16, 64, 128; stride 2 on the first
    unit of stages 2 and 3, applied by its first 1×1 conv and by its 1×1 projection shortcut);
    BN → ReLU → global average pooling (the features) → FC K (with bias). ≈0.84M parameters for
    10 classes. Convs have no bias and TF Glorot-normal (truncated) weights; the FC is
    Glorot-uniform with zero bias; BN momentum 0.1 (TF 0.9), eps 1e-5.

    Code detail kept from IEG: the ``activation`` variable is set to ``None`` for the very first
    unit and never reset, so every later unit has BN *without* ReLU before its first 1×1 conv
    (the Keras original has BN-ReLU there); the very first unit has neither BN nor ReLU there.

    Departure: global average pooling instead of ``average_pooling2d((8, 8), 1)`` (identical for
    32×32 inputs, where the last map is 8×8; the original fails on smaller inputs).
    """

    def __init__(self, num_classes: int, in_channels: int, depth: int = 29):
        super().__init__()
        if (depth - 2) % 9 != 0:
            raise ConfigError(f"ResNet v2 depth must be 9n+2; got {depth}")
        n = (depth - 2) // 9
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        ]
        c_in, x_ch = 16, 16  # bottleneck width (num_filters_in), channels of x
        for stage in range(3):
            c_out = c_in * 4 if stage == 0 else c_in * 2
            for i in range(n):
                very_first = stage == 0 and i == 0
                layers.append(
                    _BottleneckV2(
                        x_ch,
                        c_in,
                        c_out,
                        stride=2 if stage > 0 and i == 0 else 1,
                        pre_bn=not very_first,
                        pre_relu=False,  # IEG's never-reset `activation = None`
                        first=i == 0,
                    )
                )
                x_ch = c_out
            c_in = c_out
        layers += [
            nn.BatchNorm2d(x_ch),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(x_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _glorot_normal_(m.weight)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@MODELS.register("resnet29")
def resnet29(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """IEG's ResNet-29 (pre-activation bottleneck v2, widths 64/128/256), ≈0.84M params."""
    return ResNet29(num_classes, _channels(input_shape, "resnet29"))


# --------------------------------------------------------------------------------------------
# ResNet-50 (torchvision)


class TorchvisionResNet(Classifier):
    """A torchvision ResNet behind the model contract.

    ``forward_features`` runs everything up to and including the global average pool (2048
    features for ResNet-50); ``head`` is torchvision's ``fc``. With ``in_channels != 3``,
    ``conv1`` is replaced by a fresh 7×7/2 conv with that many input channels (torchvision's
    Kaiming-normal init). Randomly initialised; no pretrained weights are downloaded.
    """

    def __init__(self, arch: str, num_classes: int, in_channels: int):
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        if in_channels != 3:
            old = net.conv1
            net.conv1 = nn.Conv2d(
                in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False
            )
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.head = net.fc
        net.fc = nn.Identity()
        self.net = net

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@MODELS.register("resnet50")
def resnet50(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """torchvision ResNet-50 (random init, ImageNet stem), ≈23.5M + 2049·K params."""
    return TorchvisionResNet("resnet50", num_classes, _channels(input_shape, "resnet50"))
