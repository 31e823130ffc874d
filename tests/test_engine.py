"""The loader, the loop, diagnostics, checkpoints/resume, and the method contract."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

import noisyfit
from noisyfit.data.loader import Batch, DeviceLoader, per_image_standardize, random_crop_flip
from noisyfit.engine.checkpoint import load_checkpoint
from noisyfit.engine.diagnostics import SelectionMeter
from noisyfit.engine.loop import NonFiniteLossError
from noisyfit.engine.schedule import learning_rate
from noisyfit.methods import (
    METHODS,
    Context,
    Method,
    StepOutput,
    _builtin,  # noqa: F401
    build_method,
)
from noisyfit.models import build_model

TINY = dict(dataset="synthetic", model="cnn-tiny", progress=False, batch_size=64)


# ---------------------------------------------------------------------------- loader


def test_loader_visits_every_sample_once_per_epoch_and_is_seeded():
    x = np.arange(10 * 4, dtype=np.uint8).reshape(10, 1, 2, 2)
    dl = DeviceLoader(x, np.arange(10), batch_size=3, seed=5)
    idx0 = torch.cat([b.index for b in dl.epoch(0)])
    assert sorted(idx0.tolist()) == list(range(10)) and len(dl) == 4
    assert torch.equal(idx0, torch.cat([b.index for b in dl.epoch(0)]))
    assert not torch.equal(idx0, torch.cat([b.index for b in dl.epoch(1)]))
    for b in dl.epoch(2):  # labels and inputs follow the index
        assert torch.equal(b.labels, b.index)
    sub = dl.subset(torch.arange(10) % 2 == 0)
    assert sorted(torch.cat([b.index for b in sub.epoch(0)]).tolist()) == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="bool"):
        dl.subset(torch.arange(10))


def test_loader_normalizes_with_channel_stats():
    x = np.full((4, 2, 3, 3), 255, dtype=np.uint8)
    x[:, 1] = 0
    dl = DeviceLoader(x, np.zeros(4), batch_size=4, mean=(0.5, 0.5), std=(0.5, 0.25), shuffle=False)
    b = next(iter(dl))
    assert torch.allclose(b.x[:, 0], torch.tensor(1.0)) and torch.allclose(
        b.x[:, 1], torch.tensor(-2.0)
    )


def test_random_crop_flip_is_a_shift_or_mirror_of_the_input():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    out = random_crop_flip(x, pad=2, flip=True, g=g)
    assert out.shape == x.shape
    for i in range(2):
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        found = any(
            torch.equal(out[i], v[:, dy : dy + 6, dx : dx + 6])
            for v in (padded, padded.flip(-1))
            for dy in range(5)
            for dx in range(5)
        )
        assert found
    assert torch.equal(random_crop_flip(x, pad=0, flip=False), x)


def test_per_image_standardize():
    x = torch.rand(3, 3, 8, 8) * 100
    z = per_image_standardize(x)
    assert torch.allclose(z.flatten(1).mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.flatten(1).std(1, unbiased=False), torch.ones(3), atol=1e-4)
    flat = per_image_standardize(torch.full((1, 1, 4, 4), 7.0))  # constant image: no div by 0
    assert torch.isfinite(flat).all()
    # TF's rule against numpy: (x - mean) / max(std, 1/sqrt(M)), with images whose std lies
    # below 1/sqrt(M) = 1/8 (tiny) and above it
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.random((2, 1, 8, 8)) * 0.01, rng.random((2, 1, 8, 8)) * 50])
    f = xs.reshape(4, -1).astype(np.float64)
    ref = (f - f.mean(1, keepdims=True)) / np.maximum(f.std(1, keepdims=True), 1 / 8)
    got = per_image_standardize(torch.as_tensor(xs, dtype=torch.float32)).flatten(1)
    assert np.allclose(got.numpy(), ref, atol=1e-5)


# ---------------------------------------------------------------------------- schedule


def test_step_and_cosine_schedules():
    lr = [learning_rate("step", 0.1, e, 0, 10, 100) for e in (0, 49, 50, 74, 75, 99)]
    assert lr == pytest.approx([0.1, 0.1, 0.02, 0.02, 0.004, 0.004])
    assert learning_rate("cosine", 0.1, 0, 0, 10, 10) == pytest.approx(0.1)
    assert learning_rate("cosine", 0.1, 5, 0, 10, 10) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="schedule"):
        learning_rate("linear", 0.1, 0, 0, 1, 1)


# ---------------------------------------------------------------------------- diagnostics


def test_selection_meter_on_hand_built_case():
    true = torch.tensor([0, 1, 2, 3, 0, 1])
    given = torch.tensor([0, 1, 0, 0, 0, 2])  # samples 2, 3, 5 are wrong
    m = SelectionMeter(true, torch.device("cpu"))
    sel = torch.tensor([True, True, True, False, False, False])
    new = torch.tensor([0, 1, 2, 0, 0, 1])  # sample 2 corrected, sample 5 corrected (but dropped)
    m.update(torch.arange(6), given, selected=sel, new_labels=new)
    r = m.compute()
    assert r["label_precision"] == pytest.approx(2 / 3)  # selected {0,1,2}: 0,1 clean
    assert r["label_recall"] == pytest.approx(2 / 3)  # clean {0,1,4}: 0,1 selected
    assert r["correction_accuracy"] == pytest.approx(1.0)  # only selected relabel: sample 2
    assert r["trained_label_accuracy"] == pytest.approx(1.0)
    assert r["selected_frac"] == pytest.approx(0.5)
    w = SelectionMeter(true, torch.device("cpu"))
    w.update(torch.arange(6), given, weights=torch.tensor([1.0, 1, 0, 0, 2, 0]))
    assert w.compute()["weight_precision"] == pytest.approx(1.0)
    no_truth = SelectionMeter(None, torch.device("cpu"))
    no_truth.update(torch.arange(6), given, selected=sel)
    assert "label_precision" not in no_truth.compute()


# ---------------------------------------------------------------------------- loop


def test_loop_overfits_tiny_clean_set(tmp_path):
    r = noisyfit.train(
        **TINY, noise="none", epochs=8, lr=0.05, out=str(tmp_path), lr_schedule="constant"
    )
    assert r.history[-1]["train_error"] < 0.05
    assert r.test_acc > 0.9
    assert r.summary["realized_noise_rate"] == 0.0


def test_run_folder_contents(tmp_path):
    r = noisyfit.train(**TINY, epochs=2, out=str(tmp_path), name="run", noise_rate=0.3)
    d = r.run_dir
    for f in (
        "config.yaml",
        "env.json",
        "noise.json",
        "noisy_labels.npy",
        "log.csv",
        "metrics.jsonl",
        "checkpoint.pt",
        "samples.csv",
        "summary.json",
    ):
        assert (d / f).is_file(), f
    rows = list(csv.reader(open(d / "log.csv")))
    assert rows[0] == [
        "epoch",
        "learning rate",
        "training loss",
        "training error",
        "test loss",
        "test error",
    ]
    assert len(rows) == 3 and float(rows[2][5]) == pytest.approx(1 - r.test_acc, abs=1e-5)
    metrics = [json.loads(line) for line in open(d / "metrics.jsonl")]
    assert metrics[0]["images_per_s"] > 0 and "label_precision" in metrics[0]
    noise = json.loads((d / "noise.json").read_text())
    labels = np.load(d / "noisy_labels.npy")
    assert noise["realized_rate"] == pytest.approx(r.summary["realized_noise_rate"])
    samples = list(csv.DictReader(open(d / "samples.csv")))
    assert len(samples) == len(labels) == 512
    assert all(s["verdict"] == "kept" for s in samples)
    wrong = np.mean([s["given_label"] != s["true_label"] for s in samples])
    assert wrong == pytest.approx(noise["realized_rate"])
    env = json.loads((d / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    state = load_checkpoint(d / "checkpoint.pt")  # weights_only=True
    assert state["epoch"] == 1 and "net" in state["models"]
    with pytest.raises(FileExistsError, match="--resume"):
        noisyfit.train(**TINY, epochs=2, out=str(tmp_path), name="run")


class _Stop(Exception):
    pass


def test_resume_equals_uninterrupted(tmp_path, interrupted):
    kw = dict(**TINY, epochs=4, out=str(tmp_path), deterministic=True, augment=True, noise_rate=0.3)
    full = noisyfit.train(**kw, name="full")
    interrupted("standard", 2, **kw, name="cut")
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 1
    resumed = noisyfit.train(resume=tmp_path / "cut")
    assert len(resumed.history) == 4
    for a, b in zip(full.history, resumed.history):
        for key in ("train_loss", "test_loss", "test_acc", "label_precision"):
            assert a[key] == b[key], (key, a["epoch"])
    wa = full.method.models["net"].state_dict()
    wb = resumed.method.models["net"].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@METHODS.register("_test-nan", help="test only: produces a NaN loss in epoch 2")
class _NaNMethod(Method):
    name = "_test-nan"

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.models = {"net": ctx.make_model()}

    def training_step(self, batch, epoch):
        logits = self.models["net"](batch.x)
        loss = torch.nn.functional.cross_entropy(logits, batch.labels)
        return StepOutput(loss=loss * float("nan") if epoch == 1 else loss, logits=logits)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match="epoch 2"):
        noisyfit.train(**TINY, method="_test-nan", epochs=3, out=str(tmp_path), name="nan")
    state = load_checkpoint(tmp_path / "nan" / "checkpoint.pt")
    assert state["epoch"] == 0
    assert all(
        torch.isfinite(v).all() for v in state["models"]["net"].values() if v.is_floating_point()
    )


# ---------------------------------------------------------------------------- contract


def _ctx(n=40, k=4):
    return Context(
        num_classes=k,
        num_samples=n,
        input_shape=(1, 8, 8),
        epochs=2,
        batch_size=8,
        device=torch.device("cpu"),
        noise_rate=0.2,
        make_model=lambda: build_model("cnn-tiny", k, (1, 8, 8)),
    )


@pytest.mark.parametrize("name", [n for n in METHODS.names() if not n.startswith("_")])
def test_method_contract(name):
    assert dataclasses.is_dataclass(METHODS.get(name).Config)
    assert METHODS.describe(name)
    ctx = _ctx()
    if METHODS.get(name).needs_probe:  # a clean probe loader, as train() gives such methods
        ctx.probe = DeviceLoader(
            np.random.randint(0, 256, (8, 1, 8, 8), dtype=np.uint8), np.arange(8) % 4, batch_size=8
        )
    m = build_method(name, ctx)
    assert m.models and all(isinstance(v, torch.nn.Module) for v in m.models.values())
    assert {f.name for f in dataclasses.fields(Batch)} == {"index", "x", "labels"}
    b = Batch(torch.arange(8), torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,)))
    m.train()
    out = m.training_step(b, 0)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    for f in ("selected", "weights", "new_labels", "score"):
        v = getattr(out, f)
        assert v is None or v.shape == (8,)
    logits = m.eval_logits(b.x)
    assert all(v.shape == (8, 4) for v in logits.values())
    state = m.state_dict()
    m.load_state_dict(state)


def test_a_collapsed_run_warns_with_the_fix(tmp_path, monkeypatch):
    import warnings

    from noisyfit.engine.loop import CollapseWarning
    from noisyfit.methods.standard import Standard

    def one_class(self, batch, epoch):  # the same loss, predictions all on class 2
        out = plain(self, batch, epoch)
        out.logits = out.logits + 100.0 * torch.eye(out.logits.shape[1])[2]
        return out

    plain = Standard.training_step
    kw = dict(
        dataset="synthetic",
        model="cnn-tiny",
        epochs=2,
        batch_size=64,
        progress=False,
        out=str(tmp_path),
        checkpoint=False,
        report=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = noisyfit.train(**kw, name="ok")
    assert not [w for w in caught if issubclass(w.category, CollapseWarning)]
    assert all(r["top_class_share"] < 0.9 for r in res.history)
    monkeypatch.setattr(Standard, "training_step", one_class)
    with pytest.warns(CollapseWarning, match="epoch 2: .* class 2 for 100% .* lower --lr"):
        res = noisyfit.train(**kw, name="collapsed")
    assert [r["top_class_share"] for r in res.history] == [1.0, 1.0]
