"""INCV (theory, selection, training) and the baselines of its table: F-correction,
Decoupling, MentorNet-PD, D2L — rules on hand-built inputs, then tiny end-to-end runs."""

import csv
import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import noisyfit
from noisyfit.analysis.incv import (
    incv_select,
    measured,
    predicted_from_confusion,
    removal_count,
    removal_ratio,
    save_best_until,
    theory,
)
from noisyfit.analysis.noise_rate import rate_from_agreement
from noisyfit.cli import main
from noisyfit.methods import Context, build_method
from noisyfit.methods.d2l import bootstrapped_loss, d2l_alpha, lid_mle, turning_point
from noisyfit.methods.decoupling import decoupled_loss, disagreement_mask
from noisyfit.methods.f_correction import (
    backward_corrected_loss,
    estimate_transition,
    forward_corrected_loss,
)
from noisyfit.methods.incv import keep_smallest, selected_noise_rate
from noisyfit.methods.mentornet import (
    parse_dropout_rates,
    pretrained_mentor,
    vstar_mentornet_pd,
)
from noisyfit.models import build_model
from noisyfit.noise import transition_matrix

TINY = ["--dataset", "synthetic", "--model", "cnn-tiny", "--no-progress", "--batch-size", "64"]


# ---------------------------------------------------------------------------- theory


def test_theory_symmetric_and_pair_closed_forms():
    e, k = 0.4, 10
    r = theory(transition_matrix("symmetric", k, e))
    a = (1 - e) ** 2 + e**2 / (k - 1)
    assert r["test_acc"] == pytest.approx(a)
    assert r["label_precision"] == pytest.approx((1 - e) ** 2 / a)
    assert r["label_recall"] == pytest.approx(1 - e)
    e = 0.3
    r = theory(transition_matrix("pair", k, e))
    assert r["test_acc"] == pytest.approx(0.49 + 0.09)
    assert r["label_precision"] == pytest.approx(0.49 / 0.58)
    assert r["label_recall"] == pytest.approx(0.7)
    # symmetric minimum of A at ε = (K−1)/K (the paper's figure: 0.1 at 0.9 for K = 10)
    assert theory(transition_matrix("symmetric", 10, 0.9))["test_acc"] == pytest.approx(0.1)


def test_theory_general_3x3_by_hand():
    t = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    r = theory(t)
    # Σ_j T_ij² per row: 0.54, 0.66, 0.34; diagonal squares 0.49, 0.64, 0.16
    assert r["test_acc"] == pytest.approx(1.54 / 3)
    assert r["label_precision"] == pytest.approx(1.29 / 1.54)
    assert r["label_recall"] == pytest.approx(1.29 / 1.9)
    # a non-uniform prior weights the rows
    p = np.array([0.5, 0.25, 0.25])
    r = theory(t, p)
    assert r["test_acc"] == pytest.approx(0.5 * 0.54 + 0.25 * 0.66 + 0.25 * 0.34)
    assert r["label_recall"] == pytest.approx(
        (0.5 * 0.49 + 0.25 * 0.8**2 + 0.25 * 0.16) / (0.5 * 0.7 + 0.25 * 0.8 + 0.25 * 0.4)
    )
    # the M-based prediction equals the theory at M = T, and is perfect at M = I
    assert predicted_from_confusion(t, t) == pytest.approx(theory(t))
    ideal = predicted_from_confusion(np.eye(3), t)
    assert ideal["test_acc"] == pytest.approx(1.9 / 3)
    assert ideal["label_precision"] == pytest.approx(1.0)
    assert ideal["label_recall"] == pytest.approx(1.0)


def test_measured_on_hand_built_held_out_set():
    true = np.array([0, 0, 1, 1, 2, 2])
    given = np.array([0, 1, 1, 1, 0, 2])  # samples 1, 4 wrong
    pred = np.array([0, 1, 1, 0, 2, 2])  # agrees on 0, 1, 2, 5
    m = measured(true, given, pred, 3)
    assert m["test_acc"] == pytest.approx(4 / 6)
    assert m["label_precision"] == pytest.approx(3 / 4)  # 0, 2, 5 clean of 4 agreeing
    assert m["label_recall"] == pytest.approx(3 / 4)  # clean {0, 2, 3, 5}
    assert m["confusion"][0].tolist() == [0.5, 0.5, 0.0]
    assert measured(None, given, pred, 3).keys() == {"test_acc", "n"}


def test_rate_from_agreement_inverts_the_theory():
    for e in (0.0, 0.2, 0.5, 0.8):
        a = theory(transition_matrix("symmetric", 10, e))["test_acc"]
        assert rate_from_agreement(a + 1e-12, 10) == pytest.approx(e, abs=1e-3)


# ---------------------------------------------------------------------------- INCV selection


def _fake_cv(true, noisy, k, correct=1.0, seed=0):
    """train_fn/predict_fn without a network: predictions = the truth for a fraction
    ``correct`` of samples (a held-out M ≈ I), uniform otherwise; records keep_best."""
    g = torch.Generator().manual_seed(seed)
    right = torch.rand(len(true), generator=g) < correct
    guess = torch.where(right, true, torch.randint(0, k, (len(true),), generator=g))
    calls = []

    def train_fn(train_mask, val_mask, keep_best):
        assert not (train_mask & val_mask).any()
        calls.append(keep_best)
        return None

    def predict_fn(model, mask):
        p = F.one_hot(guess[mask], k).float() * 0.9 + 0.1 / k
        return p / p.sum(1, keepdim=True)

    return train_fn, predict_fn, calls


def _noisy(n=400, k=4, rate=0.4, seed=0):
    rng = np.random.default_rng(seed)
    true = torch.as_tensor(np.arange(n) % k)
    flip = torch.as_tensor(rng.random(n) < rate)
    other = (true + torch.as_tensor(rng.integers(1, k, n))) % k
    return true, torch.where(flip, other, true)


def test_incv_select_with_a_perfect_predictor():
    true, noisy = _noisy()
    train_fn, predict_fn, calls = _fake_cv(true, noisy, 4)
    res = incv_select(noisy, 4, train_fn, predict_fn, iterations=2, true_labels=true, log=None)
    clean = true == noisy
    assert torch.equal(res.select, clean)  # agreement = clean; all clean found in iteration 1
    assert not (res.candidate & res.select).any()
    # ε̂ from the symmetric formula inverted at the clean fraction (M = I, not M = T)
    assert res.eps_hat == pytest.approx(rate_from_agreement(res.agreement, 4), abs=1e-9)
    assert res.rho == pytest.approx(min(2, res.eps_hat / (1 - res.eps_hat)))
    assert res.iterations[0]["label_precision"] == 1.0
    assert res.oos_probs.shape == (400, 4) and torch.allclose(res.oos_probs.sum(1), torch.ones(400))
    assert len(calls) == 4 and calls[:2] == [True, True]


def test_incv_keep_best_schedule_and_asymmetric_candidates():
    true, noisy = _noisy(n=2000, rate=0.5)
    for eps, sym, expect in (
        (0.2, True, [True] * 8),
        (0.35, True, [True] * 4 + [False] * 4),
        (0.2, False, [True] * 2 + [False] * 6),
    ):
        train_fn, predict_fn, calls = _fake_cv(true, noisy, 4, correct=0.8)
        res = incv_select(
            noisy, 4, train_fn, predict_fn, iterations=4, eps=eps, symmetric=sym, log=None
        )
        assert calls == expect, (eps, sym)
        assert res.eps_hat == eps
        if not sym:  # large-loss samples stay candidates under asymmetric noise
            assert res.candidate.sum() + res.select.sum() == len(noisy)
    assert [save_best_until(e, True) for e in (0.1, 0.31, 0.61)] == [4, 2, 1]


def test_removal_count_zero_removes_nothing():
    assert removal_count(removal_ratio(0.001), 100) == 0  # int(0.1001) = 0
    assert removal_count(0.5, 9) == 4
    true, noisy = _noisy(n=200)
    train_fn, predict_fn, _ = _fake_cv(true, noisy, 4, correct=1.0)
    res = incv_select(noisy, 4, train_fn, predict_fn, iterations=1, eps=0.001, log=None)
    # the original's [-0:] slice would have removed both halves entirely
    assert not res.removed.any()
    assert torch.equal(res.candidate, ~res.select)


# ---------------------------------------------------------------------------- INCV method


def _ctx(n=40, k=4, epochs=10):
    return Context(
        num_classes=k,
        num_samples=n,
        input_shape=(1, 8, 8),
        epochs=epochs,
        batch_size=8,
        device=torch.device("cpu"),
        noise_rate=0.2,
        make_model=lambda: build_model("cnn-tiny", k, (1, 8, 8)),
    )


def test_incv_forget_rate_and_keep_rule():
    assert selected_noise_rate(0.5, 10, True) == pytest.approx(0.25 / (0.25 + 9 * 0.25))
    assert selected_noise_rate(0.4, 10, False) == pytest.approx(0.16 / (0.16 + 0.36))
    loss = torch.tensor([0.5, 0.1, 0.9, 0.2, 0.05, 0.3])
    elig = torch.tensor([True, True, True, True, False, True])
    keep = keep_smallest(loss, elig, torch.tensor(3.0))
    assert keep.tolist() == [False, True, False, True, False, True]  # 0.05 not eligible
    assert not keep_smallest(loss, elig, torch.tensor(0.0)).any()


def test_incv_state_round_trip_and_warmup():
    from noisyfit.data.loader import Batch

    m = build_method("incv", _ctx(), {"eps": "0.4", "e_warm": "2"})
    assert m.e_warm == 2 and m.eps_s == pytest.approx(selected_noise_rate(0.4, 4, True))
    m.select[20:] = False
    m.candidate[20:30] = True
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in m.state_dict().items()}
    m2 = build_method("incv", _ctx(), {"e_warm": "2", "batches": "all"})  # over all N
    m2.load_state_dict(state)
    assert torch.equal(m2.select, m.select) and m2.sizes == (20, 10)
    assert m2.c_prob == pytest.approx(1.0)  # 0.5·20/10 ≥ 1
    b = Batch(torch.arange(20, 36), torch.randn(16, 1, 8, 8), torch.randint(0, 4, (16,)))
    assert not m2.training_step(b, 1).selected.any()  # before e_warm: S only (none here)
    out = m2.training_step(b, 5)  # after: candidates 20..29 mixed in, n_keep from S (0)
    assert not out.selected.any() and torch.isfinite(out.loss)


# ---------------------------------------------------------------------------- F-correction


def test_forward_and_backward_correction_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([1, 2])
    t = torch.tensor([[0.8, 0.2, 0.0], [0.1, 0.7, 0.2], [0.0, 0.3, 0.7]])
    p = logits.softmax(1)
    manual = torch.stack(
        [
            -torch.log(sum(p[0, i] * t[i, 1] for i in range(3))),
            -torch.log(sum(p[1, i] * t[i, 2] for i in range(3))),
        ]
    )
    assert torch.allclose(forward_corrected_loss(logits, y, t), manual)
    t_inv = torch.linalg.inv(t)
    manual_b = torch.stack([-(t_inv[1] * p[0].log()).sum(), -(t_inv[2] * p[1].log()).sum()])
    assert torch.allclose(backward_corrected_loss(logits, y, t_inv), manual_b, atol=1e-5)
    # with T = I both reduce to cross-entropy
    eye = torch.eye(3)
    assert torch.allclose(
        forward_corrected_loss(logits, y, eye),
        F.cross_entropy(logits, y, reduction="none"),
        atol=1e-5,
    )


def test_anchor_point_estimate_of_t():
    # class-0 anchors: rows 0 (an outlier at p=1.0) and 1; percentile filter skips the outlier
    probs = torch.tensor(
        [[1.00, 0.00], [0.90, 0.10], [0.60, 0.40], [0.20, 0.80], [0.30, 0.70]] + [[0.5, 0.5]] * 95
    )
    t_plain = estimate_transition(probs, percentile=100)
    assert torch.allclose(t_plain, torch.tensor([[1.0, 0.0], [0.2, 0.8]]))
    t97 = estimate_transition(probs, percentile=97)
    # 'higher' 97th percentile of column 0 is 0.6: entries ≥ 0.6 are dropped → argmax 0.5
    assert torch.allclose(t97[0], torch.tensor([0.5, 0.5]))
    assert torch.allclose(t97.sum(1), torch.ones(2))


def test_f_correction_with_a_known_t(tmp_path):
    from noisyfit.data.loader import Batch

    t = np.full((4, 4), 0.1) + 0.6 * np.eye(4)
    np.save(tmp_path / "t.npy", t)
    m = build_method("f-correction", _ctx(), {"t_file": str(tmp_path / "t.npy")})
    assert torch.allclose(m.T, torch.as_tensor(t, dtype=torch.float32))
    m.prepare()  # a known T: no first run
    b = Batch(torch.arange(8), torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,)))
    out = m.training_step(b, 0)
    with torch.no_grad():
        want = forward_corrected_loss(out.logits, b.labels, m.T).mean()
    assert float(out.loss.detach()) == pytest.approx(float(want))
    with pytest.raises(ValueError):
        build_method("f-correction", _ctx(k=3), {"t_file": str(tmp_path / "t.npy")})


# ---------------------------------------------------------------------------- Decoupling


def test_decoupling_mask_and_normalisation():
    l1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.2, 0.1]])
    l2 = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.3]])
    u = disagreement_mask(l1, l2)
    assert u.tolist() == [True, False, False, True]
    ce = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert decoupled_loss(ce, u, 0.1) == pytest.approx((1 + 4) / 2)  # max(0.4, 2) = 2
    one = torch.tensor([True, False, False, False])
    assert decoupled_loss(ce, one, 0.5) == pytest.approx(1 / 2)  # max(4·0.5, 1) = 2
    assert decoupled_loss(ce, torch.zeros(4, dtype=torch.bool), 0.1) == 0


# ---------------------------------------------------------------------------- MentorNet


def test_mentornet_pd_target():
    d = torch.tensor([-1.0, -0.1, 0.0, 0.1, 0.5, 2.0])
    assert vstar_mentornet_pd(d, torch.full((6,), 10.0)).tolist() == [1.0] * 6
    assert vstar_mentornet_pd(d, torch.full((6,), 18.0)).tolist() == [1.0] * 6
    assert vstar_mentornet_pd(d, torch.full((6,), 50.0)).tolist() == [1, 1, 1, 0, 0, 0]
    v = vstar_mentornet_pd(d, torch.full((6,), 95.0))
    assert v.tolist() == pytest.approx([1, 1, 1, 0.9, 0.5, 0])
    assert vstar_mentornet_pd(d, torch.full((6,), 95.0), gamma=2.0)[4] == pytest.approx(0.75)
    rates = parse_dropout_rates("0.5,17,0.05,83")
    assert len(rates) == 100 and rates[16] == 0.5 and rates[17] == 0.05
    with pytest.raises(ValueError, match="100"):
        parse_dropout_rates("0.5,17")


def test_mentor_imitates_the_curriculum_and_weights_the_student():
    mentor, mse = pretrained_mentor()
    assert mse < 0.01
    d = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    with torch.no_grad():
        for ep, want in ((10, [1, 1, 1, 1]), (50, [1, 1, 0, 0]), (95, [1, 1, 0.5, 0])):
            e = torch.full((4,), float(ep))
            v = torch.sigmoid(mentor(torch.full((4,), 2.0), d, torch.zeros(4), e))
            assert v.tolist() == pytest.approx(want, abs=0.15), ep
    m = build_method("mentornet", _ctx(epochs=100), {"dropout_rates": "0.0,100"})
    loss = torch.tensor([0.1, 0.2, 0.3, 5.0, 6.0, 0.15, 0.25, 0.35])
    v, v_drop = m.weights(loss, epoch=50)
    lam = 0.5 * float(torch.quantile(loss, 0.75, interpolation="nearest"))
    assert float(m.loss_ema) == pytest.approx(lam)  # λ = 0.5·0 + 0.5·percentile
    assert torch.equal(v, v_drop)  # no dropout at rate 0
    assert (v[loss > lam + 0.3] < 0.2).all() and (v[loss < lam - 0.3] > 0.8).all()


# ---------------------------------------------------------------------------- D2L


def test_lid_estimator_on_known_point_sets():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    lid = lid_mle(x, k=2)
    # point 0: neighbours at 1 and 3 → −2 / (log(1/3) + log 1) = 2 / log 3
    assert lid[0] == pytest.approx(2 / math.log(3), rel=1e-5)
    # point 7: neighbours at 4 and 6 → −2 / log(4/6)
    assert lid[3] == pytest.approx(-2 / math.log(4 / 6), rel=1e-5)
    g = torch.Generator().manual_seed(0)
    cube = torch.rand(1000, 3, generator=g)
    rot = torch.linalg.qr(torch.randn(8, 8, generator=g))[0][:3]
    est = lid_mle(cube @ rot, k=20).mean()  # a 3-d set embedded in 8-d
    assert 2.4 < float(est) < 3.6


def test_d2l_turning_point_alpha_and_loss():
    base = [10, 9, 8, 7, 6, 5.0, 5.1, 4.9, 5.0, 5.05]
    assert not turning_point(base, 5, 5)  # not enough epochs yet (10 ≤ 5 + 5)
    assert turning_point(base + [7.0], 5, 5)
    assert not turning_point(base + [5.1], 5, 5)
    assert d2l_alpha(30, 100, [10.0, 8.0, 12.0]) == pytest.approx(math.exp(-0.3 * 12 / 8))
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    y = torch.tensor([1, 2])
    p = logits.softmax(1)
    a = 0.7
    manual = torch.stack([-(a * p[0, 1].log() + (1 - a) * p[0, 0].log()), -p[1, 2].log()])
    assert torch.allclose(bootstrapped_loss(logits, y, a), manual, atol=1e-6)


# ---------------------------------------------------------------------------- end to end


def test_cli_clean_incv_beats_chance_and_writes_the_csv(tmp_path, capsys):
    rc = main(
        [
            "clean",
            "--method",
            "incv",
            *TINY,
            "--noise-rate",
            "0.4",
            "--out",
            str(tmp_path),
            "--name",
            "c",
            "--method-options",
            "iterations",
            "2",
            "cv_epochs",
            "3",
        ]
    )
    assert rc == 0
    assert "label precision" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "c" / "incv_results.csv")))
    assert list(rows[0]) == ["y", "y_noisy", "select", "candidate", "eval_ratio"]
    assert len(rows) == 512 and len({r["eval_ratio"] for r in rows}) == 1
    assert {r["select"] for r in rows} <= {"True", "False"}
    assert not any(r["select"] == r["candidate"] == "True" for r in rows)
    s = json.loads((tmp_path / "c" / "incv_summary.json").read_text())
    clean = np.mean([r["y"] == r["y_noisy"] for r in rows])
    sel = [r for r in rows if r["select"] == "True"]
    lp = np.mean([r["y"] == r["y_noisy"] for r in sel])
    assert s["label_precision"] == pytest.approx(lp)
    assert lp > clean + 0.2 and s["label_recall"] > 0.5  # clean fraction ≈ 0.6
    assert len(s["iterations"]) == 2 and "label_recall" in s["iterations"][0]
    from noisyfit.commands.clean import write_incv_csv  # no truth: y is empty

    write_incv_csv(
        tmp_path / "n.csv",
        None,
        np.array([2, 0]),
        np.array([True, False]),
        np.array([False, True]),
        0.25,
    )
    rows = list(csv.reader(open(tmp_path / "n.csv")))
    assert rows[1:] == [["", "2", "True", "False", "0.250"], ["", "0", "False", "True", "0.250"]]


def test_cli_theory_single_and_sweep(tmp_path, capsys):
    rc = main(
        [
            "theory",
            *TINY,
            "--epochs",
            "3",
            "--noise-rate",
            "0.4",
            "--out",
            str(tmp_path),
            "--name",
            "t",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "label precision" in out and "max |M − T|" in out
    r = json.loads((tmp_path / "t" / "theory.json").read_text())
    assert r["theory"] == pytest.approx(theory(transition_matrix("symmetric", 4, 0.4)))
    assert np.asarray(r["M"]).shape == (4, 4) and r["held_out"] == 256
    assert (tmp_path / "t" / "confusion.png").stat().st_size > 0
    # the exact expectation from M matches the measurement up to sampling error
    assert r["from_measured_M"]["test_acc"] == pytest.approx(r["measured"]["test_acc"], abs=0.08)
    rc = main(
        [
            "theory",
            "--sweep",
            "--rates",
            "0.2,0.5",
            "--kinds",
            "pair",
            "--heatmap-rates",
            "0.5",
            *TINY,
            "--epochs",
            "2",
            "--out",
            str(tmp_path),
            "--name",
            "s",
        ]
    )
    assert rc == 0
    d = tmp_path / "s"
    for f in ("sweep.json", "sweep.md", "theory_curves.png", "confusion_pair0.5.png"):
        assert (d / f).is_file(), f
    assert len(json.loads((d / "sweep.json").read_text())) == 2


@pytest.mark.parametrize(
    "method,opts",
    [
        ("incv", {"iterations": "1", "cv_epochs": "2", "e_warm": "0"}),
        ("f-correction", {"estimate_epochs": "2"}),
        ("d2l", {"init_epoch": "0", "epoch_win": "1", "lid_samples": "256"}),
    ],
)
def test_multi_stage_methods_train_end_to_end(tmp_path, method, opts):
    r = noisyfit.train(
        dataset="synthetic",
        model="cnn-tiny",
        progress=False,
        batch_size=64,
        method=method,
        method_options=opts,
        epochs=3,
        noise_rate=0.4,
        out=str(tmp_path),
        name=method,
        lr=0.05,
    )
    assert r.test_acc is not None and r.test_acc > 0.5
    last = r.history[-1]
    assert last["label_precision"] is not None
    if method == "incv":
        assert last["label_precision"] > 0.8  # trains on the selected (cleaner) set
        assert r.method.select.sum() < len(r.method.select)


def test_incv_resume_keeps_the_selection(tmp_path, monkeypatch, interrupted):
    from noisyfit.engine.checkpoint import load_checkpoint
    from noisyfit.methods import METHODS

    cls = METHODS.get("incv")
    kw = dict(
        dataset="synthetic",
        model="cnn-tiny",
        progress=False,
        batch_size=64,
        method="incv",
        method_options={"iterations": "1", "cv_epochs": "2"},
        epochs=3,
        noise_rate=0.4,
        out=str(tmp_path),
        name="r",
    )
    interrupted("incv", 1, **{k: v for k, v in kw.items() if k != "method"})
    saved = load_checkpoint(tmp_path / "r" / "checkpoint.pt")["method"]
    assert 0 < int(saved["select"].sum()) < 512
    monkeypatch.setattr(cls, "prepare", lambda self: pytest.fail("selection re-run on resume"))
    r = noisyfit.train(resume=tmp_path / "r")
    assert len(r.history) == 3
    assert torch.equal(r.method.select.cpu(), saved["select"].cpu())
    assert r.method.eps_hat == saved["eps_hat"]


# ---------------------------------------------------------------------------- τ estimate


def test_tau_estimate_predicts_without_augmentation():
    """``--tau auto --augment``: the estimate's predictions are those of the un-augmented
    inputs — the same as without ``--augment`` for the same trained networks (they used to be
    of random crops: another agreement, another τ)."""
    from noisyfit.api import build_run
    from noisyfit.config import TrainConfig
    from noisyfit.engine.subset import estimate_noise_rate

    cfg = TrainConfig(
        dataset="synthetic", model="cnn-tiny", progress=False, batch_size=64, epochs=1,
        noise_rate=0.4, device="cpu",
    )  # fmt: skip
    plain = build_run(cfg, method=False)
    torch.manual_seed(0)
    nets = [plain.ctx.train_model(None), plain.ctx.train_model(None)]  # the two folds' networks
    est, preds = {}, {}
    for augment in (False, True):
        ctx = build_run(cfg.replace(augment=augment), method=False).ctx
        assert ctx.loader.augment == augment
        folds = iter(nets)
        ctx.train_model = lambda *a, folds=folds, **k: next(folds)
        preds[augment] = seen = []
        ctx.predict = lambda m, mask=None, p=ctx.predict, seen=seen: (
            seen.append(p(m, mask)) or seen[-1]
        )
        est[augment] = estimate_noise_rate(ctx, epochs=1, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(preds[False], preds[True]))
    assert est[True] == est[False]
    # the estimate's agreement is that of the plain inputs, counted by hand
    half = torch.zeros(512, dtype=torch.bool)
    half[torch.randperm(512, generator=torch.Generator().manual_seed(3))[:256]] = True
    x, y = plain.ctx.loader, plain.ctx.loader.labels
    hits = 0
    for net, other in zip(nets, (~half, half)):
        net.eval()
        with torch.no_grad():
            xb = x.transform(x.x[other])
            hits += int((net(xb).argmax(1) == y[other]).sum())
    assert est[True]["agreement"] == hits / 512
    # and augmentation does change these networks' predictions: the check can fail
    aug = build_run(cfg.replace(augment=True), method=False).ctx.loader.subset(~half)
    aug.shuffle = False
    with torch.no_grad():
        crops = torch.cat([nets[0](b.x).argmax(1) for b in aug.epoch(0)])
    assert not torch.equal(crops, preds[False][0].argmax(1))


def test_fidelity_before_after_script_pairs_each_fix_by_seed(
    tmp_path, fashion_idx, benchmark_script
):
    """benchmarks/fidelity_before_after.py end to end on a tiny idx folder: one row per (fix,
    noise), before and after with mean ± std over the seeds, Δ = after − before paired by seed."""
    fba = benchmark_script("fidelity_before_after")
    data = fashion_idx(tmp_path / "fmnist")
    out = tmp_path / "fba.md"
    fba.main(["--jobs", "1", "--fixes", "1", "--out", str(out), "--data-dir", str(data),
              "--epochs", "2", "--train-subset", "300", "--test-subset", "60",
              "--seeds", "0", "1", "--noises", "symmetric:0.5"])  # fmt: skip
    rows = [r for r in out.read_text().splitlines() if r.startswith("| MentorNet")]
    assert len(rows) == 1
    cells = rows[0].split(" | ")
    assert cells[1] == "symmetric 0.5"
    pairs = [
        re.fullmatch(r"(\d+\.\d\d) ± \d+\.\d\d / (\d+\.\d\d) ± \d+\.\d\d", c) for c in cells[2:4]
    ]
    assert all(pairs), cells
    before_sel, after_sel = (float(m.group(1)) for m in pairs)
    delta = float(re.match(r"[+-]\d+\.\d\d", cells[4]).group())
    assert delta == pytest.approx(after_sel - before_sel, abs=0.011)  # mean Δ = Δ of means
