"""Speed contracts (issue #15): no host syncs in any method's ``training_step``, batched strong
augmentation with the per-image op distribution, the automatic evaluation batch, ``eval_every``.
"""

from __future__ import annotations

import contextlib
import traceback
import warnings

import pytest
import torch

import noisyfit
from noisyfit.methods import METHODS, _builtin  # noqa: F401  (registers the built-ins)

# ---------------------------------------------------------------------------- host syncs

#: Tensor methods that read a value back to the host (a device sync on CUDA).
_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__")
#: Functions whose output size depends on the data (a device sync on CUDA).
_DATA_DEPENDENT = ("nonzero", "masked_select", "unique", "argwhere")


class HostSyncCounter:
    """Counts host reads of tensor values while ``active`` (CPU stand-in for
    ``torch.cuda.set_sync_debug_mode``): ``.item()``, ``.tolist()``, ``bool(t)`` ...,
    data-dependent shapes (boolean-mask indexing, ``nonzero``, ``unique``) and host→device
    scalar copies (``torch.tensor(3.0, device=...)``).

    ``calls`` lists (what, method name) per read, so a failure names the culprit.
    """

    def __init__(self, monkeypatch):
        self.active: str | None = None
        self.calls: list[tuple[str, str]] = []
        self.where: list[str] = []  # file:line of each read, outside torch
        for name in _READS:
            self._wrap(monkeypatch, torch.Tensor, name)
        for name in _DATA_DEPENDENT:
            self._wrap(monkeypatch, torch.Tensor, name)
            self._wrap(monkeypatch, torch, name)
        for name in ("__getitem__", "__setitem__"):
            self._wrap(monkeypatch, torch.Tensor, name, only_bool_key=True)
        self._wrap(monkeypatch, torch, "tensor", only_scalar=True)  # a host→device scalar copy

    def _wrap(self, monkeypatch, owner, name, only_bool_key=False, only_scalar=False):
        orig = getattr(owner, name)
        counter = self

        def wrapped(*args, **kwargs):
            if counter.active is not None:
                hit = True
                if only_bool_key:
                    key = args[1] if len(args) > 1 else None
                    keys = key if isinstance(key, tuple) else (key,)
                    hit = any(torch.is_tensor(k) and k.dtype == torch.bool for k in keys)
                    # t[mask] = <number> dispatches to masked_fill_ (ATen's
                    # canDispatchToMaskedFill): no sync; a tensor value goes through nonzero
                    if name == "__setitem__" and isinstance(args[2], (int, float, bool)):
                        hit = False
                if only_scalar:
                    hit = bool(args) and isinstance(args[0], (int, float, bool))
                if hit:
                    counter.calls.append((name, counter.active))
                    counter.where.append(_caller())
                    with counter.paused():
                        return orig(*args, **kwargs)
            return orig(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapped)

    @contextlib.contextmanager
    def paused(self):
        was, self.active = self.active, None
        try:
            yield
        finally:
            self.active = was

    @contextlib.contextmanager
    def counting(self, what: str):
        was, self.active = self.active, what
        try:
            yield
        finally:
            self.active = was


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/torch/" not in frame.filename and not frame.filename.endswith("test_speed.py"):
            return f"{frame.filename}:{frame.lineno}"
    return "?"


@contextlib.contextmanager
def cuda_sync_errors():
    """On CUDA: every synchronizing call raises (the real check; not run on CPU-only CI)."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


METHOD_NAMES = [n for n in METHODS.names() if not n.startswith("_")]
#: Options that bring each method's later phases into a 4-epoch run (selection, correction,
#: restarts, the turning point); any other registered method runs with its defaults.
PHASES = {
    "selfie": {"warm_up": "1", "restart": "1", "round_epochs": "2"},
    "d2l": {"init_epoch": "1", "epoch_win": "1"},
    "coteaching": {"t_k": "1"},
    "dividemix": {"warm_up": "1"},
    "jocor": {"t_k": "1"},
}


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_training_step_has_no_host_sync(name, tmp_path, monkeypatch):
    """Every ``training_step`` of a short real run (all phases of 4 epochs: warm-up, selection,
    correction, meta steps) reads nothing back to the host; the engine's NaN check is outside
    the step and does not count."""
    cls = METHODS.get(name)
    counter = HostSyncCounter(monkeypatch)
    steps = []
    original = cls.training_step

    def counted(self, batch, epoch):
        steps.append(epoch)
        if self.ctx.device.type == "cuda":
            with cuda_sync_errors():
                return original(self, batch, epoch)
        with counter.counting(name):
            return original(self, batch, epoch)

    monkeypatch.setattr(cls, "training_step", counted)
    kw = dict(
        dataset="synthetic",
        model="cnn-tiny",
        method=name,
        epochs=4,
        batch_size=64,
        method_options=PHASES.get(name, {}),
        progress=False,
        out=str(tmp_path),
        checkpoint=False,
        noise_rate=0.4,
    )
    if cls.needs_probe:
        kw["probe_per_class"] = 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        noisyfit.train(report=False, **kw)
    assert len(steps) >= 4 * 4, f"{name}: only {len(steps)} training steps ran"
    assert counter.calls == [], (
        f"{name}: host reads in training_step: {counter.calls[:5]} at {counter.where[:5]}"
    )


def test_host_sync_counter_catches_reads(monkeypatch):
    """The counter sees each kind of read (so the test above can fail)."""
    counter = HostSyncCounter(monkeypatch)
    t = torch.arange(6.0)
    with counter.counting("probe"):
        t.sum().item()
        bool(t.sum() > 0)
        float(t[0])
        int(t[1])
        t.tolist()
        t[t > 2]
        t[t > 3] = torch.ones(2)
        t[t > 2] = 0.0  # masked_fill_: no read
        torch.nonzero(t)
        torch.tensor(2.0)
        torch.tensor([1, 2])  # an index list: not a scalar copy
        t[1:3]  # a view: no read
        t * 2  # arithmetic: no read
    t.sum().item()  # outside: not counted
    assert [c for c, _ in counter.calls] == [
        "item",
        "__bool__",
        "__float__",
        "__int__",
        "tolist",
        "__getitem__",
        "__setitem__",
        "nonzero",
        "tensor",
    ]


# ---------------------------------------------------------------------------- strong augmentation


def _per_image_reference(x, plan):
    """Each image on its own through torchvision's ops, in the order of its plan."""
    from torchvision.transforms import v2

    aa = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    out = []
    for img, ops in zip(x, plan):
        for op in ops:
            if op is not None:
                img = aa._apply_image_or_video_transform(
                    img, op[0], op[1], interpolation=aa.interpolation, fill=aa._fill
                )
        out.append(img)
    return torch.stack(out)


@pytest.mark.parametrize("channels", [1, 3])
def test_batched_autoaugment_equals_per_image_ops(channels):
    """Grouped batch calls give every image exactly what its own ops give it alone (a batch of
    200 covers every sub-policy; constant images test AutoContrast/Equalize's edge case)."""
    import random

    from noisyfit.data.augment import BatchedPolicy

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (200, channels, 12, 10), dtype=torch.uint8, generator=g)
    x[:5] = 77  # constant images
    bp = BatchedPolicy("autoaug", random.Random(1))
    plan = bp.plan(len(x), 12, 10)
    assert len({tuple(o for o in ops) for ops in plan}) > 25  # many distinct op pairs
    assert torch.equal(bp.apply(x, plan), _per_image_reference(x, plan))


def test_batched_autoaugment_draws_ops_like_torchvision(monkeypatch):
    """The per-image ops drawn for the batch have the distribution of torchvision's per-image
    ``v2.AutoAugment``: (op, signed magnitude) frequencies over 6000 images agree within
    sampling error (total variation 0.033 here, < 0.06; op probabilities 1.3× too high: 0.15)."""
    import collections
    import random

    from torchvision.transforms import v2

    from noisyfit.data.augment import BatchedPolicy

    n, h, w = 6000, 8, 8
    ours = collections.Counter()
    for ops in BatchedPolicy("autoaug", random.Random(0)).plan(n, h, w):
        ours.update((s, op) for s, op in enumerate(ops) if op is not None)
    ours.update({("none",): n * 2 - sum(ours.values())})

    theirs = collections.Counter()
    seen = []
    aa = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)

    def record(self, image, transform_id, magnitude, interpolation, fill):
        seen.append((transform_id, magnitude))
        return image

    monkeypatch.setattr(type(aa), "_apply_image_or_video_transform", record)
    torch.manual_seed(0)
    img = torch.zeros(1, h, w, dtype=torch.uint8)
    for _ in range(n):
        seen.clear()
        aa(img)
        # which stage an op came from is not recorded by torchvision: a single op is stage 0
        # unless only the second op of its sub-policy was drawn; compare stage-free counts
        theirs.update(seen)
    theirs.update({("none",): n * 2 - sum(theirs.values())})
    ours_flat = collections.Counter()
    for k, v in ours.items():
        ours_flat[k[1] if len(k) == 2 else k] += v
    keys = set(ours_flat) | set(theirs)
    tv = 0.5 * sum(abs(ours_flat[k] - theirs[k]) for k in keys) / (2 * n)
    assert tv < 0.06, tv
    signed = [k for k in keys if len(k) == 2 and k[1] < 0]
    assert signed and all(ours_flat[k] > 0 for k in signed)


def test_strong_view_has_no_per_image_loop(monkeypatch):
    """The strong view of a batch of 64 calls torchvision's op at most once per (stage, op,
    magnitude) group, not once per image."""
    from torchvision.transforms import v2

    from noisyfit.data.augment import StrongAugment
    from noisyfit.data.loader import DeviceLoader

    calls = []
    orig = v2.AutoAugment._apply_image_or_video_transform

    def counted(self, image, *a, **k):
        calls.append(len(image))
        return orig(self, image, *a, **k)

    monkeypatch.setattr(v2.AutoAugment, "_apply_image_or_video_transform", counted)
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    loader = DeviceLoader(x, torch.zeros(64, dtype=torch.long), batch_size=64)
    batch = next(iter(loader))
    view = StrongAugment("autoaug", image_size=(8, 8))(loader, batch)
    assert view.shape == (64, 3, 8, 8) and view.dtype == torch.float32
    assert sum(calls) <= 2 * 64 and len(calls) < sum(calls)  # grouped: fewer calls than images


# ---------------------------------------------------------------------------- evaluation


def test_eval_batch_defaults_to_the_fast_one_per_device():
    from noisyfit.api import build_context, prepare_data
    from noisyfit.config import CPU_EVAL_BATCH, CUDA_EVAL_BATCH, TrainConfig

    cfg = TrainConfig(dataset="synthetic", model="cnn-tiny")
    assert cfg.eval_batch_size is None
    assert (cfg.eval_batch_for("cpu"), cfg.eval_batch_for("cuda:1")) == (256, 1000)
    assert (CPU_EVAL_BATCH, CUDA_EVAL_BATCH) == (256, 1000)
    assert cfg.replace(eval_batch_size=300).eval_batch_for("cuda") == 300
    _, test = build_context(cfg, prepare_data(cfg), torch.device("cpu"))
    assert test.batch_size == 256 and len(test) == 1  # 256 synthetic test images
    with pytest.raises(ValueError, match="eval_batch_size.*at least 1"):
        TrainConfig(eval_batch_size=0)
    with pytest.raises(ValueError, match="eval_every.*at least 1"):
        TrainConfig(eval_every=0)


def test_eval_every_evaluates_every_n_epochs_and_the_last(tmp_path, monkeypatch):
    import noisyfit.engine.loop as loop

    calls = []
    real = loop.evaluate

    def counted(method, loader):
        calls.append(loader.batch_size)
        return real(method, loader)

    monkeypatch.setattr(loop, "evaluate", counted)
    res = noisyfit.train(
        dataset="synthetic",
        model="cnn-tiny",
        epochs=5,
        eval_every=2,
        batch_size=64,
        progress=False,
        out=str(tmp_path),
        checkpoint=False,
        report=False,
    )
    evaluated = [r["epoch"] for r in res.history if r["test_acc"] is not None]
    assert evaluated == [2, 4, 5]
    assert calls == [256, 256, 256]
    assert res.test_acc == res.history[-1]["test_acc"] is not None


def test_host_memory_gather_gives_the_same_batches():
    """The host-memory path (data too large for the GPU: pinned gather, one order read-back
    per epoch) yields exactly the batches of the on-device path; forced here on the CPU."""
    from noisyfit.data.loader import DeviceLoader

    x = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(50) % 3
    a = DeviceLoader(x, y, batch_size=16, seed=3, augment=True)
    b = DeviceLoader(x, y, batch_size=16, seed=3, augment=True)
    b.host_gather = True  # as when the data stays in host memory for a GPU
    calls = []
    real = b._gather_pinned
    b._gather_pinned = lambda rows: calls.append(len(rows)) or real(rows)
    for ba, bb in zip(a.epoch(2), b.epoch(2), strict=True):
        assert torch.equal(ba.index, bb.index) and torch.equal(ba.x, bb.x)
        assert torch.equal(ba.labels, bb.labels)
    assert calls == [16, 16, 16, 2]


# ---------------------------------------------------------------------------- meta step


@pytest.mark.parametrize("weight_decay", [True, False])
def test_forward_mode_meta_gradients_equal_double_backward(weight_decay):
    """The forward-mode meta-gradient (no double backward) equals the double-backward one for
    IEG's two coefficients (ω, λ) and L2R's ε, with BatchNorm, momentum and weight decay."""
    import torch.nn.functional as F

    from noisyfit.methods.l2r import meta_gradients
    from noisyfit.models import build_model

    torch.manual_seed(0)
    net = build_model("cnn-tiny", 4, (1, 8, 8))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-3)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 4, (16,))
    px, py = torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))
    F.cross_entropy(net(x), y).backward()
    opt.step()  # momentum buffers exist
    opt.zero_grad()
    guess = torch.softmax(torch.randn(16, 4), 1)
    onehot = F.one_hot(y, 4).float()
    results = []
    for fast in (False, True):
        logits = net(x)
        log_p = logits.log_softmax(1)
        omega = torch.full((16,), 1 / 16, requires_grad=True)
        lam = torch.full((16,), 0.9, requires_grad=True)

        def look(w, l, log_p=log_p):
            target = l[:, None] * onehot + (1 - l[:, None]) * guess
            return (w * -(target * log_p).sum(1)).sum()

        kw = dict(train_x=x, train_logits=logits) if fast else {}
        (g_w, g_l), meta, _ = meta_gradients(
            net, look, (omega, lam), px, py, step_size=0.1, momentum=0.9, optimizer=opt,
            weight_decay=weight_decay, **kw,
        )  # fmt: skip
        results.append((g_w, g_l, meta))
    (a_w, a_l, a_m), (b_w, b_l, b_m) = results
    assert a_w.abs().max() > 1e-4 and a_l.abs().max() > 1e-4  # not trivially zero
    torch.testing.assert_close(b_w, a_w, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b_l, a_l, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b_m, a_m)


def test_l2r_meta_gradient_at_zero_weights_needs_no_lookahead_backward(monkeypatch):
    """L2R at ε₀ = 0: the shortcut (virtual step = weight decay + momentum, no backward)
    gives the double-backward meta-gradient."""
    import torch.nn.functional as F

    from noisyfit.methods.l2r import meta_gradients
    from noisyfit.models import build_model

    torch.manual_seed(1)
    net = build_model("cnn-tiny", 4, (1, 8, 8))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-3)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 4, (16,))
    px, py = torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,))
    F.cross_entropy(net(x), y).backward()
    opt.step()
    opt.zero_grad()
    out = []
    for kw in ({}, {"zero_at_coeffs": True}):
        logits = net(x)
        ce = F.cross_entropy(logits, y, reduction="none")
        eps = torch.zeros(16, requires_grad=True)
        if kw:
            kw = dict(kw, train_x=x, train_logits=logits)
        (g,), _, _ = meta_gradients(
            net, lambda e, ce=ce: (e * ce).sum(), (eps,), px, py, step_size=0.1, momentum=0.9,
            optimizer=opt, **kw,
        )  # fmt: skip
        out.append(g)
    assert out[0].abs().max() > 1e-5
    torch.testing.assert_close(out[1], out[0], rtol=1e-4, atol=1e-7)
