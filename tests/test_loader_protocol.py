"""The Loader protocol (DeviceLoader and the WebVision FolderLoader), the one way augmentation
is switched off (``eval_view``), what methods declare they need (``Method.needs``,
``check_needs``) and the engine's ``after_step`` hook (issue 11, items 4 and 5)."""

import numpy as np
import pytest
import torch

import noisyfit.api as api
from noisyfit.config import TrainConfig
from noisyfit.data.loader import DeviceLoader, Loader
from noisyfit.engine.loop import CollapseWarning, fit
from noisyfit.errors import ConfigError
from noisyfit.methods import METHODS, _builtin  # noqa: F401
from noisyfit.methods.base import NEEDS, Context, Method, StepOutput, check_needs

TINY = dict(dataset="synthetic", model="cnn-tiny", progress=False, batch_size=64, epochs=1)


def _images(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)


def _folder(tmp_path, n=5):
    from PIL import Image

    from noisyfit.data.webvision import FolderLoader, ImageList

    paths = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (12, 14), (40 * i, 10, 200 - 30 * i)).save(p)
        paths.append(p)
    items = ImageList(paths, np.arange(n) % 2, ["a", "b"])
    return FolderLoader(items, batch_size=2, train=True, crop=8, resize=10, workers=0, seed=3)


# ---------------------------------------------------------------------------- protocol


def test_device_loader_eval_view_is_plain_ordered_and_shares_the_data():
    x = _images()
    dl = DeviceLoader(x, torch.arange(10) % 3, batch_size=4, augment=True, seed=1)
    assert isinstance(dl, Loader)
    ev = dl.eval_view()
    assert dl.augment and dl.shuffle  # the loader itself is untouched
    assert not ev.augment and ev.x is dl.x
    got = torch.cat([b.x for b in ev.epoch(5)])
    plain = DeviceLoader(x, torch.arange(10) % 3, batch_size=4, shuffle=False)
    assert torch.equal(got, torch.cat([b.x for b in plain.epoch(0)]))  # no crop/flip, in order
    assert torch.cat([b.index for b in ev.epoch(5)]).tolist() == list(range(10))
    aug = torch.cat([b.x for b in dl.epoch(0)])
    assert not torch.equal(aug.sort(0).values, got.sort(0).values)  # the train view augments
    # a subset's eval view keeps the subset; batch_size can be changed
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 4, 7]] = True
    sub = dl.subset(mask).eval_view(batch_size=100)
    (b,) = list(sub.epoch(0))
    assert b.index.tolist() == [1, 4, 7] and torch.equal(b.x, got[[1, 4, 7]])
    # batch(index): those samples, in that order
    bb = ev.batch(torch.tensor([7, 1]))
    assert bb.index.tolist() == [7, 1] and torch.equal(bb.x, got[[7, 1]])
    assert torch.equal(bb.labels, torch.tensor([1, 1]))


def test_folder_loader_implements_subset_eval_view_and_batch(tmp_path):
    fl = _folder(tmp_path)
    assert isinstance(fl, Loader) and fl.supports_subsets and not fl.in_memory
    assert fl.num_samples == 5 and len(fl) == 3
    mask = torch.tensor([True, False, True, True, False])
    sub = fl.subset(mask)
    assert sub.num_samples == 3 and len(sub) == 2
    assert sorted(torch.cat([b.index for b in sub.epoch(0)]).tolist()) == [0, 2, 3]
    ev = sub.eval_view(batch_size=10)
    (b,) = list(ev.epoch(0))
    assert b.index.tolist() == [0, 2, 3] and b.x.shape == (3, 3, 8, 8)
    again = torch.cat([x.x for x in ev.epoch(1)])
    assert torch.equal(b.x, again)  # the evaluation transform: deterministic
    one = ev.batch(torch.tensor([3, 0]))
    assert torch.equal(one.x, b.x[[2, 0]]) and one.labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match="bool tensor"):
        fl.subset(torch.ones(4, dtype=torch.bool))
    # the full loader's order is unchanged by the subset support
    assert [x.index.tolist() for x in fl.epoch(2)] == [x.index.tolist() for x in fl.epoch(2)]


# ---------------------------------------------------------------------------- needs


class _NoSubsets(DeviceLoader):
    """A loader that cannot train or predict on subsets (as a streaming loader might)."""

    supports_subsets = False
    in_memory = False


def test_needs_are_declared_and_the_legacy_flags_derived():
    names = METHODS.names()
    for name in names:
        cls = METHODS.get(name)
        assert cls.needs <= NEEDS, name
        assert cls.needs_probe == ("probe" in cls.needs)
        assert cls.needs_noise_rate == ("noise_rate" in cls.needs)
    assert METHODS.get("l2r").needs == {"probe"} and METHODS.get("ieg").needs == {"probe"}
    for name in ("incv", "f-correction", "d2l"):
        assert "subsets" in METHODS.get(name).needs
    assert "noise_rate" in METHODS.get("coteaching").needs
    assert METHODS.get("dividemix").needs == {"in_memory"}
    assert METHODS.get("standard").needs == frozenset()

    class Legacy(Method):
        needs_probe = True

    assert Legacy.needs == {"probe"}
    with pytest.raises(TypeError, match="unknown need"):

        class Bad(Method):
            needs = frozenset({"gpu"})


@pytest.mark.parametrize("method", ["incv", "f-correction", "d2l"])
def test_subset_methods_are_refused_on_a_loader_without_subsets_before_any_file(
    method, tmp_path, monkeypatch
):
    monkeypatch.setattr(api, "train_loader_class", lambda cfg: _NoSubsets)
    with pytest.raises(ConfigError, match=rf"method '{method}' needs .*subsets.*_NoSubsets"):
        api.train(TrainConfig(**TINY, method=method, out=str(tmp_path)), report=False)
    assert list(tmp_path.iterdir()) == []  # nothing written
    # the same run on the in-memory loader is accepted by the check
    check_needs(METHODS.get(method), TrainConfig(**TINY, method=method), DeviceLoader, None)


def test_check_needs_names_the_method_and_the_need(tmp_path):
    cfg = TrainConfig(**TINY)
    fl = _folder(tmp_path)
    with pytest.raises(ConfigError, match=r"'dividemix' needs the raw inputs held in memory"):
        check_needs(METHODS.get("dividemix"), cfg, fl, None)
    check_needs(METHODS.get("incv"), cfg, fl, None)  # the folder loader has subsets
    with pytest.raises(ConfigError, match=r"'l2r' needs a clean probe set: pass --probe"):
        check_needs(METHODS.get("l2r"), cfg, DeviceLoader, False)
    check_needs(METHODS.get("l2r"), cfg, DeviceLoader, True)
    # τ: a float --tau, a known nominal rate, or an estimate on subsets
    selfie = METHODS.get("selfie")
    with pytest.raises(ConfigError, match=r"'selfie' needs a noise rate τ.*--tau"):
        check_needs(selfie, cfg, _NoSubsets, None)
    check_needs(selfie, cfg, _NoSubsets, None, noise_rate=0.4)
    check_needs(selfie, cfg.replace(tau=0.3), _NoSubsets, None)
    check_needs(selfie, cfg, DeviceLoader, None)


def test_train_refuses_a_probe_method_without_a_probe_before_any_file(tmp_path):
    with pytest.raises(ConfigError, match=r"method 'l2r' needs a clean probe set"):
        api.train(TrainConfig(**TINY, method="l2r", out=str(tmp_path)), report=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- engine hooks


class _Counting(Method):
    name = "counting"

    def __init__(self, ctx, hint=""):
        super().__init__(None, ctx)
        self.models = {"net": torch.nn.Linear(4, 3)}
        self.calls = []
        type(self).collapse_hint = hint

    def training_step(self, batch, epoch):
        with torch.no_grad():  # one class wins everywhere: the engine's collapse warning
            self.models["net"].bias.copy_(torch.tensor([50.0, 0.0, 0.0]))
        self.calls.append(("step", self.models["net"].weight.detach().clone()))
        logits = self.models["net"](batch.x)
        return StepOutput(
            loss=torch.nn.functional.cross_entropy(logits, batch.labels), logits=logits
        )

    def after_step(self):
        self.calls.append(("after", self.models["net"].weight.detach().clone()))


def test_fit_calls_after_step_once_after_each_optimizer_step_and_adds_the_hint():
    x = torch.randn(40, 4)
    loader = DeviceLoader(x, torch.arange(40) % 3, batch_size=8)
    ctx = Context(3, 40, (4,), 2, 8, torch.device("cpu"), lambda: None)
    m = _Counting(ctx, hint="Try the method's documented warm-up.")
    cfg = TrainConfig(**{**TINY, "epochs": 2}, lr=0.5)
    with pytest.warns(CollapseWarning, match="Try the method's documented warm-up"):
        fit(m, loader, None, cfg)
    kinds = [k for k, _ in m.calls]
    assert kinds == ["step", "after"] * 10  # 5 batches × 2 epochs
    # after_step sees the updated weights: those the next step starts from
    for (_, after), (_, nxt) in zip(m.calls[1::2], m.calls[2::2]):
        assert torch.equal(after, nxt)
    assert not torch.equal(m.calls[0][1], m.calls[1][1])


def test_ieg_carries_its_collapse_hint_and_standard_none():
    assert "rampup_steps" in METHODS.get("ieg").collapse_hint
    assert METHODS.get("standard").collapse_hint == ""


def test_the_demo_reads_each_methods_short_run_options():
    from noisyfit.commands.demo import _options

    assert _options("selfie", 40) == {
        "warm_up": "10",
        "q": "10",
        "restart": "0",
        "round_epochs": "40",
    }
    assert _options("incv", 40) == {"cv_epochs": "20", "t_k": "2"}
    assert _options("coteaching", 8) == {"t_k": "2"}
    assert _options("standard", 40) == {}
    assert METHODS.get("standard").baseline and not METHODS.get("coteaching").baseline
