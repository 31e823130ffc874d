"""Contract tests for the model zoo: shapes, features, parameter counts, one training step."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from noisyfit.models import MODELS, build_model
from noisyfit.models.densenet import densenet
from noisyfit.models.resnet import ResNet29
from noisyfit.models.wrn import wide_resnet

torch.set_num_threads(2)

MODELS_ZOO = [
    "cnn9",
    "vgg19",
    "densenet-10-12",
    "densenet-25-12",
    "densenet-40-12",
    "resnet32",
    "preact-resnet18",
    "resnet29",
    "resnet50",
    "wrn28-10",
    "wrn10-1",
]
BIG = {"vgg19", "wrn28-10", "resnet50"}  # forward only, batch of 2
SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64), (3, 29, 31)]
K = 10


def _names() -> list[str]:
    build_model("cnn-tiny", K, (1, 28, 28))  # imports the built-in models
    return MODELS.names()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_zoo_is_registered():
    assert set(MODELS_ZOO) <= set(_names())


def _forward_cases() -> list:
    # WRN-28-10 (≈5 GFLOPs per 32×32 image) only at the two CIFAR/MNIST sizes; wrn10-1 has the
    # same code path and covers the larger and odd sizes.
    return [
        pytest.param(name, shape, id=f"{name}-{'x'.join(map(str, shape))}")
        for name in _names()
        for shape in SHAPES
        if not (name == "wrn28-10" and shape not in SHAPES[:2])
    ]


@pytest.mark.parametrize("name, shape", _forward_cases())
def test_forward_contract(name, shape):
    torch.manual_seed(0)
    model = build_model(name, K, shape).eval()
    assert isinstance(model.head, nn.Linear) and model.head.out_features == K
    x = torch.randn(2, *shape)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
        again = model(x)
    assert feats.shape == (2, model.head.in_features)
    assert logits.shape == (2, K)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, model.head(feats))
    torch.testing.assert_close(logits, again)  # eval mode is deterministic (no dropout)


@pytest.mark.parametrize("name", MODELS_ZOO)
def test_rejects_vector_inputs(name):
    with pytest.raises(ValueError, match="image inputs"):
        build_model(name, K, (100,))


@pytest.mark.parametrize(
    "name, expected, rel",
    [
        ("resnet32", 0.46e6, 0.03),  # He et al. 2016, Table 6
        ("preact-resnet18", 11.17e6, 0.02),
        ("wrn28-10", 36.5e6, 0.02),  # Zagoruyko & Komodakis (IEG has no 1×1 projections)
        ("densenet-40-12", 1.0e6, 0.03),  # Huang et al. 2017, Table 2
    ],
)
def test_param_counts(name, expected, rel):
    assert n_params(build_model(name, K, (3, 32, 32))) == pytest.approx(expected, rel=rel)


def test_resnet50_matches_torchvision():
    ours = build_model("resnet50", K, (3, 224, 224))
    ref = torchvision.models.resnet50(weights=None, num_classes=K)
    assert n_params(ours) == n_params(ref)
    assert ours.head.in_features == 2048
    gray = build_model("resnet50", K, (1, 28, 28))
    assert n_params(ref) - n_params(gray) == 64 * 7 * 7 * 2  # only conv1 shrinks


@pytest.mark.parametrize("name", [n for n in MODELS_ZOO if n not in BIG] + ["cnn-small"])
def test_one_sgd_step(name):
    torch.manual_seed(0)
    model = build_model(name, K, (1, 28, 28)).train()
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, K, (4,))
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(x), y)
    assert torch.isfinite(loss)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), pname
    opt.step()
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert changed[0] and changed[-1]  # first layer and head
    assert sum(changed) >= 0.5 * len(changed)


def test_densenet_structure_and_init():
    net = densenet(40, 12, K, 3)
    assert net.layers_per_block == 12
    assert net.head.in_features == 16 + 3 * 12 * 12
    stem = net.body[0]
    assert stem.bias is None
    assert stem.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 16)), rel=0.15)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    big = torch.cat([c.weight.flatten() for c in convs[1:]])
    assert big.std().item() == pytest.approx(math.sqrt(2 / (9 * 12)), rel=0.05)
    assert densenet(10, 12, K, 3).layers_per_block == 2
    assert densenet(25, 12, K, 3).layers_per_block == 7


def test_resnet29_keeps_ieg_activation_detail():
    net = ResNet29(K, 3)
    units = [m for m in net.modules() if type(m).__name__ == "_BottleneckV2"]
    assert len(units) == 9
    firsts = [u.body[0] for u in units]
    assert not any(isinstance(m, nn.ReLU) for f in firsts for m in f)  # no ReLU before 1st 1×1
    assert not any(isinstance(m, nn.BatchNorm2d) for m in firsts[0])
    assert all(isinstance(f[0], nn.BatchNorm2d) for f in firsts[1:])


def test_wide_resnet_shape_and_shortcuts():
    net = wide_resnet(16, 2, K, 3)
    assert net.filters == (16, 32, 64, 128)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in net.modules())
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, K)
    with pytest.raises(ValueError):
        wide_resnet(27, 10, K, 3)


@pytest.mark.parametrize("size", [8, 12])
def test_cnn9_valid_convs_stop_at_1x1(size):
    model = build_model("cnn9", K, (1, size, size)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, size, size)).shape == (2, K)
