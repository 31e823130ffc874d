"""SELFIE, Active Bias and Co-teaching: each rule on hand-built inputs, restarts, resume, and
the command lines (``noisyfit train`` and ``noisyfit selfie-cli``) on tiny data."""

import csv
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import noisyfit
from noisyfit.cli import main
from noisyfit.data.base import load_dataset
from noisyfit.data.binary import write_binary_dataset
from noisyfit.data.loader import Batch
from noisyfit.engine.checkpoint import load_checkpoint
from noisyfit.methods import (
    ConfigError,
    Context,
    _builtin,  # noqa: F401
    build_method,
)
from noisyfit.methods.active_bias import active_bias_weights, welford_update
from noisyfit.methods.coteaching import coteaching_loss, keep_rate, num_kept
from noisyfit.methods.selfie import (
    prediction_counts,
    predictive_uncertainty,
    refurbishable,
    selfie_selection,
)
from noisyfit.models import build_model

TINY = dict(
    dataset="synthetic",
    model="cnn-tiny",
    progress=False,
    batch_size=64,
    train_subset=256,
    test_subset=128,
)
TINY_CLI = [
    "--dataset",
    "synthetic",
    "--model",
    "cnn-tiny",
    "--no-progress",
    "--batch-size",
    "64",
    "--train-subset",
    "256",
    "--test-subset",
    "128",
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread, and the CPU is shared: no thread contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Passthrough(nn.Module):
    """A 'network' whose logits are its input (times a learnable 1): losses set by hand."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * self.scale


def hand_ctx(n=8, k=3, tau=0.5, epochs=4, make_model=Passthrough):
    return Context(
        num_classes=k,
        num_samples=n,
        input_shape=(k,),
        epochs=epochs,
        batch_size=n,
        device=torch.device("cpu"),
        noise_rate=tau,
        make_model=make_model,
    )


def logits_with_loss(loss, labels, k):
    """(b, k) logits whose cross-entropy against ``labels`` is ``loss`` (two-level logits)."""
    loss = torch.as_tensor(loss, dtype=torch.float64)
    # p(label) = exp(-loss); the other k-1 classes share the rest equally
    p = torch.exp(-loss)
    rest = (1 - p) / (k - 1)
    probs = rest[:, None].repeat(1, k)
    probs[torch.arange(len(labels)), labels] = p
    return probs.log().float()


# ============================================================================ SELFIE rules


def test_refurbishable_on_hand_built_histories_with_unfilled_slots():
    k = 3
    E = k  # the value marking an empty slot
    history = torch.tensor(
        [
            [2, 2, 2, 2],  # full, unanimous → refurbish to 2
            [2, 2, 2, 1],  # full, one dissent → F > ε
            [E, E, E, E],  # never predicted (the original stores zeros: four class-0 votes)
            [1, 1, E, E],  # two predictions of 1, two empty slots → not full yet
            [0, 0, 0, 0],  # four real predictions of class 0
        ],
        dtype=torch.int32,
    )
    mask, label = refurbishable(history, k, epsilon=0.05)
    assert mask.tolist() == [True, False, False, False, True]
    assert label[0] == 2 and label[4] == 0
    counts = prediction_counts(history, k)
    assert counts[2].tolist() == [0, 0, 0, 4]  # empty slots never count as class 0
    assert counts[3].tolist() == [0, 2, 0, 2]
    f = predictive_uncertainty(counts)
    p = np.array([0.75, 0.25])
    assert f[1].item() == pytest.approx(-(p * np.log(p)).sum() / np.log(3), rel=1e-5)
    assert f[2] == 1 and f[3] == 0  # no prediction: maximal; two agreeing: 0 (but not full)
    # the zero-initialized history of the original would refurbish the unseen sample to 0
    zeros = torch.zeros(1, 4, dtype=torch.int32)
    assert refurbishable(zeros, k, 0.05)[0].item()


@pytest.mark.parametrize("k, refurbish", [(10, False), (100, False), (200, True)])
def test_one_dissent_in_fifteen_against_epsilon(k, refurbish):
    """Spec §1.2: one dissent of 15 gives F ≈ 0.106 (K=10), 0.053 (K=100), 0.046 (K=200)."""
    h = torch.full((1, 15), 3, dtype=torch.int32)
    h[0, 7] = 4
    mask, label = refurbishable(h, k, 0.05)
    f = predictive_uncertainty(prediction_counts(h, k))
    expect = -(14 / 15 * math.log(14 / 15) + 1 / 15 * math.log(1 / 15)) / math.log(k)
    assert f.item() == pytest.approx(expect, rel=1e-5)
    assert bool(mask) is refurbish and label.item() == 3


def test_selfie_selection_keeps_clean_and_refurbishes():
    loss = torch.tensor([0.1, 2.0, 0.3, 3.0, 0.2, 1.5])
    given = torch.tensor([0, 1, 2, 0, 1, 2])
    # sample 3 passes the test now (label 1); sample 5 was refurbished before (label 0)
    now = torch.tensor([False, False, False, True, False, False])
    stored = torch.tensor([-1, -1, -1, 1, -1, 0])
    # τ = 0.5: C = the ⌈3⌉ lowest losses = samples 0, 4, 2
    sel, lab = selfie_selection(loss, given, stored, now, 0.5, reuse=True)
    assert sel.tolist() == [True, False, True, True, True, True]
    assert lab.tolist() == [0, 1, 2, 1, 1, 0]
    # paper: only samples passing the test now are in R; sample 5 (loss 1.5 ∉ C) is dropped
    sel, lab = selfie_selection(loss, given, stored, now, 0.5, reuse=False, stored_for_clean=False)
    assert sel.tolist() == [True, False, True, True, True, False]
    assert lab[3] == 1 and lab[5] == 2
    # code without reuse: a clean sample with a stored label trains on it
    stored2 = torch.tensor([-1, -1, -1, 1, 2, -1])
    _, lab = selfie_selection(loss, given, stored2, now, 0.5, reuse=False, stored_for_clean=True)
    assert lab[4] == 2
    _, lab = selfie_selection(loss, given, stored2, now, 0.5, reuse=False, stored_for_clean=False)
    assert lab[4] == 1
    # ⌈(1 − τ)·b⌉ is exact where float rounding is not: 0.7·10 = 7.000000000000001
    sel, _ = selfie_selection(
        torch.arange(10.0),
        torch.zeros(10, dtype=torch.long),
        torch.full((10,), -1),
        torch.zeros(10, dtype=torch.bool),
        0.3,
    )
    assert sel.sum() == 7


def test_selfie_step_on_hand_built_batch():
    k, n = 3, 6
    m = build_method(
        "selfie", hand_ctx(n=n, k=k, tau=0.5, epochs=4), {"q": "2", "warm_up": "1", "restart": "0"}
    )
    given = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = torch.tensor([0.1, 2.0, 0.3, 3.0, 0.2, 1.5])
    x = logits_with_loss(loss, given, k)
    # histories: sample 3 full and unanimous for class 1 (→ refurbished, though high loss);
    # sample 1 full but split; sample 5 half filled with class 2 (not refurbishable yet)
    m.history[:] = torch.tensor([[0, 0], [1, 0], [2, 2], [1, 1], [1, 1], [2, k]])
    m.fill[:] = torch.tensor([2, 2, 2, 2, 2, 1])
    out = m.training_step(Batch(torch.arange(n), x, given), epoch=1)  # epoch 1: SELFIE phase
    # refurbishable now: 0 (→0), 2 (→2), 3 (→1), 4 (→1); C = {0, 4, 2}
    assert m.corrected.tolist() == [0, -1, 2, 1, 1, -1]
    assert out.selected.tolist() == [True, False, True, True, True, False]
    assert out.new_labels.tolist() == [0, 1, 2, 1, 1, 2]
    logp = torch.log_softmax(x, 1)
    train_ce = -logp[torch.arange(n), out.new_labels]
    assert out.loss.item() == pytest.approx(train_ce[out.selected].mean().item(), rel=1e-5)
    assert torch.allclose(out.score, -loss, atol=1e-5)
    # the step's predictions enter the history at slot fill % q; fill counts them
    pred = x.argmax(1)
    assert m.fill.tolist() == [3, 3, 3, 3, 3, 2]
    assert m.history[5, 1] == pred[5] and m.history[0, 0] == pred[0]
    out.loss.backward()
    # warm-up (epoch 0): every sample, refurbished labels where stored (code variant)
    out = m.training_step(Batch(torch.arange(n), x, given), epoch=0)
    assert out.selected is None and out.new_labels.tolist() == [0, 1, 2, 1, 1, 2]
    paper = build_method(
        "selfie", hand_ctx(n=n, k=k), {"variant": "paper", "q": "2", "warm_up": "1"}
    )
    paper.corrected[:] = m.corrected
    assert (
        paper.training_step(Batch(torch.arange(n), x, given), 0).new_labels.tolist()
        == given.tolist()
    )
    assert paper.restart == 2 and not paper.reuse and not paper.update_tau


def test_selfie_restart_reinitializes_and_keeps_refurbished_labels():
    def net():
        return build_model("cnn-tiny", 3, (1, 8, 8))

    ctx = hand_ctx(n=10, k=3, tau=0.4, epochs=4, make_model=net)
    m = build_method("selfie", ctx, {"restart": "1", "warm_up": "1", "q": "2"})
    assert m.rounds == 2 and m.round_epochs == 2
    m.prepare()
    assert [m.schedule_epoch(e, 4) for e in range(4)] == [(0, 2), (1, 2), (0, 2), (1, 2)]
    m.optimizer = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    out = m.training_step(
        Batch(torch.arange(10), torch.randn(10, 1, 8, 8), torch.randint(0, 3, (10,))), 0
    )
    out.loss.backward()
    m.optimizer.step()
    assert m.optimizer.state
    m.corrected[:7] = 1  # 7 of 10 samples ever refurbished
    before = {k: v.clone() for k, v in m.models["net"].state_dict().items()}
    r = m.on_epoch_end(1)  # end of round 1: τ ← min(0.4, 1 − 0.7)
    assert m.tau == pytest.approx(0.3) and r["tau_next"] == pytest.approx(0.3)
    assert m.tau_history == [pytest.approx(0.3)]
    m.on_epoch_start(2)  # a new round
    assert (m.history == 3).all() and m.fill.sum() == 0  # every slot empty (value K)
    assert m.corrected[:7].tolist() == [1] * 7 and m.corrected[7:].tolist() == [-1] * 3
    assert not m.optimizer.state
    after = m.models["net"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if "weight" in k)
    m.on_epoch_start(3)  # not a round start: nothing is reset
    assert m.corrected[:7].tolist() == [1] * 7
    # the run's epochs must be rounds × epochs per round, and leave room after the warm-up
    with pytest.raises(ConfigError, match="rounds"):
        build_method("selfie", hand_ctx(epochs=5), {"restart": "1", "round_epochs": "2"}).prepare()
    with pytest.raises(ConfigError, match="warm_up"):
        build_method("selfie", hand_ctx(epochs=4), {"restart": "1", "warm_up": "2"}).prepare()
    with pytest.raises(ConfigError, match="τ"):
        build_method("selfie", hand_ctx(tau=None))


def test_selfie_restarts_in_a_run_and_resume_restores_histories(tmp_path, interrupted):
    kw = dict(
        **TINY,
        method="selfie",
        epochs=6,
        out=str(tmp_path),
        deterministic=True,
        noise_rate=0.3,
        method_options={"restart": "1", "warm_up": "1", "q": "2"},
    )
    full = noisyfit.train(**kw, name="full")
    lrs = [h["lr"] for h in full.history]
    assert lrs[0] == lrs[3] == 0.1 and lrs[2] < 0.1  # the schedule restarts with the round
    assert [h["round"] for h in full.history] == [1, 1, 1, 2, 2, 2]
    refurb = [h["refurbished"] for h in full.history]
    assert refurb[2] > 0 and refurb == sorted(refurb)  # kept across the restart
    assert full.history[-1]["correction_accuracy"] is not None

    interrupted("selfie", 4, **{k: v for k, v in kw.items() if k != "method"}, name="cut")
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert state["epoch"] == 3  # saved mid-round 2, after one epoch of fresh histories
    assert state["method"]["fill"].tolist() == [1] * 256
    resumed = noisyfit.train(resume=tmp_path / "cut")
    for a, b in zip(full.history, resumed.history, strict=True):
        for key in (
            "train_loss",
            "test_loss",
            "label_precision",
            "refurbished",
            "tau",
            "selfie_train_loss",
        ):
            assert a[key] == b[key], (key, a["epoch"])
    fm, rm = full.method, resumed.method
    for name in ("history", "fill", "corrected"):
        assert torch.equal(getattr(fm, name), getattr(rm, name)), name
    assert fm.tau_history == rm.tau_history
    assert torch.equal(torch.cat(fm.refurb_events), torch.cat(rm.refurb_events))
    wa, wb = fm.models["net"].state_dict(), rm.models["net"].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ============================================================================ Active Bias


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_welford_equals_numpy_variance_of_the_full_list(ps):
    c, mean, m2 = (torch.zeros(1, dtype=torch.float64) for _ in range(3))
    for p in ps:
        c, mean, m2 = welford_update(c, mean, m2, torch.tensor([p], dtype=torch.float64))
    assert c.item() == len(ps)
    assert mean.item() == pytest.approx(np.mean(ps), abs=1e-12)
    assert (m2 / c).item() == pytest.approx(np.var(ps), abs=1e-12)


def test_active_bias_weights_for_hand_built_histories():
    s = 0.2
    hist = [[0.1, 0.9, 0.5], [0.5, 0.5, 0.5, 0.5], [0.2, 0.4], [0.7], []]
    count = torch.tensor([len(h) for h in hist], dtype=torch.float64)
    m2 = torch.tensor([np.var(h) * len(h) if h else 0.0 for h in hist], dtype=torch.float64)
    w = active_bias_weights(count, m2, s)
    raw = []
    for h in hist:
        v = np.var(h) if h else 0.0
        corr = v * v / (len(h) - 1) if len(h) > 1 else 0.0  # n ≤ 1: no correction term
        raw.append(np.sqrt(v + corr) + s)
    raw = np.array(raw)
    assert w.numpy() == pytest.approx(raw * len(hist) / raw.sum(), rel=1e-6)
    assert w.sum().item() == pytest.approx(len(hist), rel=1e-6)
    assert w[3] == w[4] == w[1]  # n = 1, n = 0 and zero variance all get s before normalizing
    assert active_bias_weights(torch.zeros(3), torch.zeros(3), 0.0).tolist() == [1, 1, 1]


def test_active_bias_step_uses_history_before_the_step():
    k, n = 3, 4
    m = build_method("active-bias", hand_ctx(n=n, k=k), {"warm_up": "1"})
    given = torch.tensor([0, 1, 2, 0])
    xs = [
        logits_with_loss([0.1, 1.0, 2.0, 0.5], given, k),
        logits_with_loss([0.9, 1.0, 0.1, 0.5], given, k),
    ]
    out0 = m.training_step(Batch(torch.arange(n), xs[0], given), 0)  # warm-up: weights 1
    assert out0.weights.tolist() == [1.0] * n
    out1 = m.training_step(Batch(torch.arange(n), xs[1], given), 1)
    p0 = torch.exp(-torch.tensor([0.1, 1.0, 2.0, 0.5], dtype=torch.float64))
    # after one appearance n = 1: no variance yet → uniform weights
    assert out1.weights.tolist() == pytest.approx([1.0] * n)
    p1 = torch.exp(-torch.tensor([0.9, 1.0, 0.1, 0.5], dtype=torch.float64))
    assert m.count.tolist() == [2] * n
    assert m.m2.numpy() == pytest.approx(
        np.var(np.stack([p0.numpy(), p1.numpy()]), 0) * 2, abs=1e-6
    )  # M2 = n·var
    out2 = m.training_step(Batch(torch.arange(n), xs[0], given), 1)
    var = np.var(np.stack([p0.numpy(), p1.numpy()]), 0)  # population variance of 2 entries
    expect = active_bias_weights(torch.full((n,), 2.0), torch.tensor(var * 2), 0.2)
    assert out2.weights.numpy() == pytest.approx(expect.numpy(), rel=1e-4)
    assert out2.weights[1].item() < out2.weights[0].item()  # sample 1: constant p → smallest
    ce = torch.nn.functional.cross_entropy(xs[0], given, reduction="none")
    assert out2.loss.item() == pytest.approx((out2.weights * ce).mean().item(), rel=1e-5)


# ============================================================================ Co-teaching


def test_coteaching_exchange_trains_each_net_on_the_others_picks():
    ce1 = torch.tensor([0.1, 0.5, 2.0, 3.0, 0.2, 1.0], requires_grad=True)
    ce2 = torch.tensor([3.0, 0.1, 0.2, 2.0, 1.0, 0.3], requires_grad=True)
    loss, pick1, pick2 = coteaching_loss(ce1, ce2, 3)
    assert pick1.tolist() == [True, True, False, False, True, False]
    assert pick2.tolist() == [False, True, True, False, False, True]
    assert loss.item() == pytest.approx((0.5 + 2.0 + 1.0) / 3 + (3.0 + 0.1 + 1.0) / 3)
    loss.backward()
    # net 1's loss reaches only net 2's picks (weight 1/k each: averaged once), and vice versa
    assert (ce1.grad != 0).tolist() == pick2.tolist()
    assert (ce2.grad != 0).tolist() == pick1.tolist()
    assert ce1.grad[pick2].tolist() == pytest.approx([1 / 3] * 3)


def test_coteaching_method_reports_net2_picks_and_evaluates_both():
    k, n = 3, 6
    m = build_method("coteaching", hand_ctx(n=n, k=k, tau=0.5), {"t_k": "1"})
    assert set(m.models) == {"net1", "net2"}
    m.models["net2"].scale.data.fill_(-1.0)  # net 2 ranks the batch in reverse
    given = torch.tensor([0, 1, 2, 0, 1, 2])
    x = logits_with_loss([0.1, 0.5, 2.0, 3.0, 0.2, 1.0], given, k)
    out = m.training_step(Batch(torch.arange(n), x, given), 0)  # keep ⌈0.5·6⌉ = 3
    ce2 = torch.nn.functional.cross_entropy(-x, given, reduction="none")
    assert out.selected.tolist() == (ce2 <= ce2.sort().values[2]).tolist()
    out.loss.backward()
    assert m.models["net1"].scale.grad is not None and m.models["net2"].scale.grad is not None
    ev = m.eval_logits(x)
    assert list(ev) == ["net1", "net2"] and torch.equal(ev["net2"], -x)
    r = m.on_epoch_end(0)
    assert r["keep_rate"] == 0.5 and r["train_loss_net2"] > 0


def test_coteaching_schedule():
    tau, tk, last = 0.4, 15, 99
    r = [keep_rate(e, tau, tk) for e in (0, tk - 1, tk, last)]
    assert r == pytest.approx([1 - tau / tk, 1 - tau, 1 - tau, 1 - tau])  # (e+1)/T_k offset
    assert keep_rate(4, tau, 10, exponent=2) == pytest.approx(1 - tau * 0.25)
    # official PyTorch: linspace(0, τ^c, T_k)[e + 1], then τ
    off = [keep_rate(e, tau, 10, 1.0, "official") for e in (0, 8, 9, last)]
    assert off == pytest.approx([1 - tau / 9, 1 - tau, 1 - tau, 1 - tau])
    assert keep_rate(8, 0.5, 10, 2.0, "official") == pytest.approx(1 - 0.25)  # τ^c at T_k − 1
    assert keep_rate(9, 0.5, 10, 2.0, "official") == pytest.approx(0.5)  # then jumps to τ
    assert num_kept(0.6, 128) == 77 and num_kept(0.6, 128, "official") == 76


# ============================================================================ command lines


@pytest.mark.parametrize(
    "method, options",
    [
        ("selfie", ["restart", "1", "warm_up", "1", "q", "2"]),
        ("active-bias", ["warm_up", "1"]),
        ("coteaching", ["t_k", "2"]),
    ],
)
def test_train_cli_runs_each_method(tmp_path, method, options):
    rc = main(
        [
            "train",
            *TINY_CLI,
            "--method",
            method,
            "--epochs",
            "4",
            "--noise",
            "pair",
            "--noise-rate",
            "0.3",
            "--out",
            str(tmp_path),
            "--name",
            "r",
            "--method-options",
            *options,
        ]
    )
    assert rc == 0
    rows = list(csv.DictReader(open(tmp_path / "r" / "samples.csv")))
    verdicts = {r["verdict"] for r in rows}
    assert len(rows) == 256 and verdicts <= {"kept", "dropped", "relabelled"}
    if method == "coteaching":
        assert "dropped" in verdicts
    if method == "active-bias":
        assert all(r["weight"] != "" for r in rows)


def test_selfie_cli_maps_the_seed_command_line():
    from noisyfit.commands.selfie_cli import build_config, parse_selfie_args

    a = parse_selfie_args("0 CIFAR-100 DenseNet-25-12 SELFIE pair 0.4 log/CIFAR-100/SELFIE".split())
    cfg = build_config(a)
    assert (cfg.dataset, cfg.model, cfg.method, cfg.noise, cfg.noise_rate, cfg.tau) == (
        "cifar100",
        "densenet-25-12",
        "selfie",
        "pair",
        0.4,
        0.4,
    )
    assert cfg.epochs == 400 and cfg.method_options["round_epochs"] == "100"
    assert cfg.method_options["restart"] == "3" and cfg.method_options["warm_up"] == "25"
    assert (cfg.batch_size, cfg.lr, cfg.nesterov, cfg.momentum, cfg.weight_decay) == (
        128,
        0.1,
        True,
        0.9,
        5e-4,
    )
    assert cfg.lr_milestones == (0.5, 0.75) and cfg.lr_decay == 0.2
    assert not cfg.augment and cfg.normalize == "per-image" and cfg.name == "SELFIE"
    b = build_config(parse_selfie_args("1 ANIMAL-10N VGG-19 Coteaching none 0.08 x".split()))
    assert (b.dataset, b.model, b.method, b.noise, b.tau, b.epochs) == (
        "animal-10n",
        "vgg19",
        "coteaching",
        "none",
        0.08,
        100,
    )
    c = build_config(parse_selfie_args("0 CIFAR-10 VGG-19 ActiveBias symmetry 0.2 x".split()))
    assert (c.method, c.noise) == ("active-bias", "symmetric")
    assert (
        build_config(parse_selfie_args("0 CIFAR-10 VGG-19 Default none 0 x".split())).method
        == "standard"
    )


def test_selfie_cli_on_a_binary_dataset_writes_the_original_logs(tmp_path):
    ds = load_dataset(
        "synthetic", None, n_train=160, n_test=40, num_classes=10, channels=3, image_size=32
    )
    write_binary_dataset(ds, tmp_path / "dataset" / "CIFAR-10", n_batches=5)
    common = [
        "--data-dir",
        str(tmp_path / "dataset"),
        "--epochs",
        "3",
        "--warm-up",
        "1",
        "--no-progress",
        "--batch-size",
        "32",
    ]
    log = tmp_path / "log"
    assert (
        main(
            [
                "selfie-cli",
                "0",
                "CIFAR-10",
                "cnn-tiny",
                "SELFIE",
                "pair",
                "0.4",
                str(log / "SELFIE"),
                *common,
                "--q",
                "1",
                "--restart",
                "1",
            ]
        )
        == 0
    )
    lines = (log / "SELFIE" / "log.csv").read_text().split("\n")
    assert lines[0] == "epcoh, learning rate, training loss, training error, test loss, test error"
    assert lines[1] == "" and lines[-1] == ""
    rows = [r.split(", ") for r in lines[2:-1]]
    assert [r[0] for r in rows] == ["1", "2", "3", "1", "2", "3"]  # 2 runs, counter restarts
    assert all(len(r) == 6 for r in rows) and rows[3][1] == "0.1"
    detail = (log / "SELFIE" / "detail_log.csv").read_text()
    assert detail.count("new noise rate, ") == 2
    first = detail.split("\n")[0].split(", ")
    assert len(first) == 11 and first[-1] == ""  # a row of the 10×10 true-vs-noisy matrix
    counts = np.array([[int(v) for v in row.split(", ")[:-1]] for row in detail.split("\n")[:10]])
    assert counts.sum() == 160
    assert (log / "SELFIE" / "samples.csv").is_file()  # the noisyfit run folder is LOG_DIR
    before = [(log / "SELFIE" / f).read_text() for f in ("log.csv", "detail_log.csv")]
    # --resume of the finished run leaves it, and the logs written in the original layout, as is
    assert (
        main(
            [
                "selfie-cli",
                "0",
                "CIFAR-10",
                "cnn-tiny",
                "SELFIE",
                "pair",
                "0.4",
                str(log / "SELFIE"),
                "--resume",
                "--no-progress",
            ]
        )
        == 0
    )
    assert [(log / "SELFIE" / f).read_text() for f in ("log.csv", "detail_log.csv")] == before

    assert (
        main(
            [
                "selfie-cli",
                "0",
                "CIFAR-10",
                "cnn-tiny",
                "Coteaching",
                "symmetry",
                "0.4",
                str(log / "Coteaching"),
                *common,
            ]
        )
        == 0
    )
    lines = (log / "Coteaching" / "log.csv").read_text().split("\n")
    assert lines[0].startswith("epcoh, learning rate, training loss (network1)")
    assert len(lines[0].split(", ")) == 10 and lines[1] == ""
    rows = [r.split(", ") for r in lines[2:-1]]
    assert len(rows) == 3 and all(len(r) == 10 for r in rows)
    assert (
        main(
            [
                "selfie-cli",
                "0",
                "CIFAR-10",
                "cnn-tiny",
                "Coteaching",
                "symmetry",
                "0.4",
                str(log / "Coteaching"),
                *common,
            ]
        )
        == 2
    )  # refuses to overwrite a run
