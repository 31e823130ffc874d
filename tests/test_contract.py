"""The Method contract for every registered method (issue #11 item 7), on tiny real runs.

For each method one short run (``SPEC``: the options that bring its core rule in within a few
epochs) is recorded step by step, and three things are checked:

1. **The rule past warm-up** (``RULES``): what the method's rule must produce once it is
   active — a selection of the right size that is a strict subset, weights that are ≥ 0 and
   sum as specified, relabelled samples, the per-sample state changed from its start, a loss
   equal to the written formula on the logits the networks produced.
2. **State round-trip**: the trained method's ``state_dict()``, through a ``weights_only``
   checkpoint file's serialization, loaded into a *fresh* instance (a new Context, new
   networks) gives equal state tensors, equal eval logits and an equal next training step.
3. **Resume equality**: a run interrupted at the end of epoch ``cut`` (the ``interrupted``
   fixture: Ctrl-C before that epoch's checkpoint) and resumed writes the same
   ``metrics.jsonl`` numbers (every column but the timings) and ends with the same weights
   and state as the uninterrupted run (CPU, fixed seed, deterministic mode: bit for bit).

Runs and instances are built through the public API only (``noisyfit.train``,
``build_method``, a ``Context``), so the tests do not depend on how a run is assembled.
A method added to the registry needs its entry in ``RULES`` (and ``SPEC`` if its rule starts
late); ``test_every_method_has_a_rule`` says so.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import noisyfit
from noisyfit.methods import METHODS, _builtin  # noqa: F401  (registers the built-ins)
from noisyfit.methods.base import StepOutput, build_method

METHOD_NAMES = [n for n in METHODS.names() if not n.startswith("_")]

#: The tiny run every method trains: 128 samples in batches of 32 (4 steps an epoch), 64 test
#: images, 40 % symmetric noise, CPU, deterministic.
BASE = dict(
    dataset="synthetic",
    model="cnn-tiny",
    batch_size=32,
    train_subset=128,
    test_subset=64,
    noise_rate=0.4,
    epochs=3,
    deterministic=True,
    progress=False,
    report=False,
    device="cpu",
)

#: Per method: ``options`` (method options that bring its rule in within the run), any other
#: train() overrides, and ``cut``, the epoch (0-based) at whose end the resume test interrupts.
SPEC: dict[str, dict[str, Any]] = {
    "active-bias": {"options": {"warm_up": "1"}},
    "coteaching": {"options": {"t_k": "2"}},
    "coteaching-plus": {"options": {"t_k": "2"}},
    # a window of one epoch: the first LID rise is the turning point (epoch 4 at this lr)
    "d2l": {
        "options": {
            "k": "5",
            "lid_batch": "32",
            "lid_samples": "128",
            "init_epoch": "0",
            "epoch_win": "1",
        },
        "epochs": 4,
        "lr": 0.03,
    },
    "dividemix": {"options": {"warm_up": "1"}},
    "f-correction": {"options": {"estimate_epochs": "1"}},
    # one round of 2-fold cross-validation; C-batches joined from epoch 1 on
    "incv": {"options": {"iterations": "1", "cv_epochs": "2", "e_warm": "0", "t_k": "1"}},
    "jocor": {"options": {"t_k": "2"}},
    # one round: epoch 0 warm-up, epoch 1 the small-loss set only (histories not yet full),
    # epochs 2 and 3 refurbishment from full q = 2 histories (so the resume test's checkpoint,
    # epochs 0-2, holds refurbished labels)
    "selfie": {
        "options": {"warm_up": "1", "restart": "0", "round_epochs": "4", "q": "2"},
        "epochs": 4,
    },
    # every sample for the first 9 steps: past the resume test's checkpoint (8 steps)
    "decoupling": {"options": {"init_iter": "9"}},
}
TIMING = {"images_per_s", "epoch_time_s", "epoch_cpu_s"}


def spec(name: str) -> dict[str, Any]:
    s = dict(SPEC.get(name, {}))
    s.setdefault("options", {})
    s.setdefault("cut", s.get("epochs", BASE["epochs"]) - 1)
    return s


def run_kwargs(name: str, out) -> dict[str, Any]:
    """The train() arguments of ``name``'s tiny run (without ``method`` and ``name``)."""
    s = spec(name)
    kw = {**BASE, **{k: v for k, v in s.items() if k not in ("options", "cut")}}
    kw.update(out=str(out), method_options=s["options"])
    if METHODS.get(name).needs_probe:
        kw["probe_per_class"] = 4
    return kw


# ---------------------------------------------------------------------------- recorded runs


@dataclass
class Step:
    """One recorded ``training_step``: its epoch, the batch it was given (index (b,), labels
    (b,)), the batch after the step (``index_after``: INCV extends it), the detached
    StepOutput, and every network's forward outputs during the step, in call order."""

    epoch: int
    index: torch.Tensor
    labels: torch.Tensor
    index_after: torch.Tensor
    out: StepOutput
    outputs: dict[str, list[torch.Tensor]]

    def logits(self, net: str = "net", i: int = 0) -> torch.Tensor:
        return self.outputs[net][i]


@dataclass
class Recorded:
    result: Any  # the TrainResult of the uninterrupted run
    steps: list[Step]
    weights: dict[str, dict[str, torch.Tensor]]  # the final weights (copies)
    state: dict[str, Any]  # the final method.state_dict() (a copy)

    @property
    def method(self):
        return self.result.method

    def past(self, epoch: int) -> list[Step]:
        return [s for s in self.steps if s.epoch >= epoch]


def _detached(out: StepOutput) -> StepOutput:
    return StepOutput(
        **{
            f.name: (v.detach().clone() if torch.is_tensor(v) else v)
            for f in dataclasses.fields(out)
            for v in [getattr(out, f.name)]
        }
    )


def _record(cls, steps: list[Step], mp: pytest.MonkeyPatch) -> None:
    original = cls.training_step

    def step(self, batch, epoch):
        index, labels = batch.index.clone(), batch.labels.clone()
        outputs: dict[str, list[torch.Tensor]] = {k: [] for k in self.models}
        hooks = [
            m.register_forward_hook(lambda mod, i, o, k=k: outputs[k].append(o.detach().clone()))
            for k, m in self.models.items()
        ]
        try:
            out = original(self, batch, epoch)
        finally:
            for h in hooks:
                h.remove()
        steps.append(
            Step(
                epoch,
                index,
                labels,
                batch.index.clone(),
                _detached(out),
                outputs,
            )
        )
        return out

    mp.setattr(cls, "training_step", step)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """``full_run(name)``: the uninterrupted tiny run of ``name``, recorded (cached)."""
    cache: dict[str, Recorded] = {}

    def get(name: str) -> Recorded:
        if name not in cache:
            steps: list[Step] = []
            out = tmp_path_factory.mktemp(name)
            with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # collapse warnings of the tiny networks
                _record(METHODS.get(name), steps, mp)
                res = noisyfit.train(method=name, name="full", **run_kwargs(name, out))
            m = res.method
            cache[name] = Recorded(
                res,
                steps,
                {k: copy.deepcopy(net.state_dict()) for k, net in m.models.items()},
                copy.deepcopy(m.state_dict()),
            )
        return cache[name]

    return get


def _flat(state: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists of a state_dict as {path: leaf}."""
    if isinstance(state, dict):
        return {k2: v2 for k, v in state.items() for k2, v2 in _flat(v, f"{prefix}{k}/").items()}
    if isinstance(state, (list, tuple)):
        return {k2: v2 for i, v in enumerate(state) for k2, v2 in _flat(v, f"{prefix}{i}/").items()}
    return {prefix: state}


def _same(a: Any, b: Any) -> bool:
    if torch.is_tensor(a) or torch.is_tensor(b):
        return (
            torch.is_tensor(a)
            and torch.is_tensor(b)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and torch.equal(a.cpu(), b.cpu())
        )
    return a == b


def assert_same_state(a: dict, b: dict, what: str) -> None:
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys(), f"{what}: keys differ: {sorted(fa.keys() ^ fb.keys())}"
    bad = [k for k in fa if not _same(fa[k], fb[k])]
    assert not bad, f"{what}: entries differ: {bad}"


# ---------------------------------------------------------------------------- 1. the rules


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return torch.allclose(a.float(), b.float(), rtol=tol, atol=tol)


def _ranked_by_score(step: Step) -> bool:
    """The selection is the top of ``score`` (the small-loss ranking): every selected sample
    scores at least as high as every unselected one."""
    sel, score = step.out.selected, step.out.score
    return bool(sel.all() or not sel.any() or score[sel].min() >= score[~sel].max())


def rule_standard(run: Recorded) -> None:
    for s in run.steps:
        assert _close(s.out.loss, F.cross_entropy(s.logits().float(), s.labels))


def rule_sce(run: Recorded) -> None:
    c = run.method.config
    for s in run.steps:
        z = s.logits().float()
        p = z.softmax(1)
        p_y = p.gather(1, s.labels[:, None])[:, 0]
        # RCE = −Σ_k p_k log q_k with log q = 0 at ỹ and A elsewhere (p clamped to 1e-7)
        rce = -c.log_zero * (p.clamp(1e-7, 1).sum(1) - p_y.clamp(1e-7, 1))
        want = (c.alpha * F.cross_entropy(z, s.labels, reduction="none") + c.beta * rce).mean()
        assert _close(s.out.loss, want)
        assert _close(s.out.score, p_y)


def rule_gce(run: Recorded) -> None:
    q = run.method.config.q
    for s in run.steps:
        p_y = s.logits().float().softmax(1).gather(1, s.labels[:, None])[:, 0]
        assert _close(s.out.loss, ((1 - p_y**q) / q).mean())
        assert _close(s.out.weights, p_y**q)  # the implicit gradient weights, in [0, 1]


def rule_active_bias(run: Recorded) -> None:
    c = run.method.config
    seen: dict[int, list[float]] = {}  # p_t(ỹ) of each appearance, replayed from the logits
    for s in run.steps:
        w = s.out.weights
        assert (w >= 0).all() and math.isclose(float(w.sum()), len(w), rel_tol=1e-5)
        p = s.logits().double().softmax(1).gather(1, s.labels[:, None])[:, 0].tolist()
        if s.epoch < c.warm_up:
            assert torch.equal(w, torch.ones_like(w))
        else:  # w̃ = √(v̂ + v̂²/(n − 1)) + s from the history before this step, normalized to b
            raw = []
            for i in s.index.tolist():
                h = seen[i]
                n, mean = len(h), sum(h) / len(h)
                var = sum((x - mean) ** 2 for x in h) / n
                raw.append(math.sqrt(var + (var * var / (n - 1) if n > 1 else 0.0)) + c.smoothness)
            want = torch.tensor(raw) * (len(raw) / sum(raw))
            assert _close(w, want, 1e-4)
            if s.epoch >= 2:  # two recorded probabilities: the weights are not uniform
                assert float(w.std()) > 1e-3
        for i, x in zip(s.index.tolist(), p):
            seen.setdefault(i, []).append(x)
    stats = run.state["stats"]  # Welford's (n, mean, M2): every sample once per epoch
    assert torch.equal(stats[:, 0], torch.full_like(stats[:, 0], len(run.result.history)))
    assert (stats[:, 2] > 0).all()


def _ce(s: Step, net: str) -> torch.Tensor:
    return F.cross_entropy(s.logits(net).float(), s.labels, reduction="none")


def _smallest(loss: torch.Tensor, k: int) -> torch.Tensor:
    """(b,) bool: the k smallest entries (ties by position)."""
    mask = torch.zeros(len(loss), dtype=torch.bool)
    mask[loss.argsort(stable=True)[:k]] = True
    return mask


def rule_coteaching(run: Recorded) -> None:
    m = run.method
    tau, t_k = m.tau, m.config.t_k
    assert tau > 0
    for s in run.steps:
        b = len(s.index)
        rate = 1 - tau * min((s.epoch + 1) / t_k, 1.0)  # R(T), T the 1-based epoch
        k = math.ceil(rate * b - 1e-9)
        assert k < b  # a positive drop rate from the first epoch
        ce1, ce2 = _ce(s, "net1"), _ce(s, "net2")
        pick1, pick2 = _smallest(ce1, k), _smallest(ce2, k)
        # the exchange: net 1 on net 2's k smallest losses, net 2 on net 1's
        assert torch.equal(s.out.selected, pick2) and int(s.out.selected.sum()) == k
        assert _close(s.out.loss, ce1[pick2].mean() + ce2[pick1].mean())
        assert _close(s.out.score, -ce2)
    assert m.keep_rate(1) == pytest.approx(1 - tau)  # the full rate τ from epoch 2 (T_k = 2)


def rule_jocor(run: Recorded) -> None:
    m = run.method
    tau, t_k, lam = m.tau, m.config.t_k, m.config.co_lambda
    for s in run.steps:
        b = len(s.index)
        i = s.epoch + 1  # the official ramp: linspace(0, τ, T_k)[i], then τ
        rate = 1 - (tau * i / (t_k - 1) if i < t_k else tau)
        k = int(rate * b)
        assert k < b
        z1, z2 = s.logits("net1").float(), s.logits("net2").float()
        lp1, lp2 = z1.log_softmax(1), z2.log_softmax(1)
        kl = (lp2.exp() * (lp2 - lp1)).sum(1) + (lp1.exp() * (lp1 - lp2)).sum(1)
        joint = (1 - lam) * (_ce(s, "net1") + _ce(s, "net2")) + lam * kl
        keep = _smallest(joint, k)
        assert torch.equal(s.out.selected, keep) and int(keep.sum()) == k
        assert _close(s.out.loss, joint[keep].mean())  # both networks on the same picks


def rule_coteaching_plus(run: Recorded) -> None:
    m = run.method
    strict = 0
    for s in run.past(m.config.init_epochs):
        disagree = s.logits("net1").argmax(1) != s.logits("net2").argmax(1)
        d = int(disagree.sum())
        sel = s.out.selected
        if d == 0:  # nothing disagrees: the whole batch (step < all_until_step)
            assert sel.all()
            continue
        k = int(d * m.keep_rate(s.epoch)) or d  # int(R·d); 0 keeps all disagreeing ones
        # the code's CE of softmax outputs, ranked among the disagreeing samples only
        ce1, ce2 = (
            F.cross_entropy(s.logits(n).float().softmax(1), s.labels, reduction="none")
            for n in ("net1", "net2")
        )
        big = torch.tensor(float("inf"))
        pick1 = _smallest(torch.where(disagree, ce1, big), k)
        pick2 = _smallest(torch.where(disagree, ce2, big), k)
        assert torch.equal(sel, pick2) and not (sel & ~disagree).any(), (s.epoch, d, k)
        assert _close(s.out.loss, ce1[pick2].mean() + ce2[pick1].mean())
        strict += k < len(sel)
    assert strict > 0, "the disagreement phase never selected a strict subset"


def rule_decoupling(run: Recorded) -> None:
    m = run.method
    strict = 0
    for n, s in enumerate(run.steps):
        l1, l2 = s.logits("net1"), s.logits("net2")
        update = l1.argmax(1) != l2.argmax(1)
        if n < m.config.init_iter:  # the first init_iter steps use every sample
            update = torch.ones_like(update)
        assert torch.equal(s.out.selected, update)
        den = max(len(update) * m.config.min_batch_size, float(update.sum()))
        want = (_ce(s, "net1")[update].sum() + _ce(s, "net2")[update].sum()) / den
        assert _close(s.out.loss, want)
        strict += 0 < int(update.sum()) < len(update)
    assert strict > 0 and run.steps[m.config.init_iter - 1].out.selected.all()
    assert run.state["step"] == len(run.steps)


def rule_d2l(run: Recorded) -> None:
    hist = run.result.history
    turning = run.state["turning_epoch"]
    assert turning >= 0, f"no turning point in {len(hist)} epochs (LIDs {run.state['lids']})"
    assert len(run.state["lids"]) == len(hist)
    switched = 0
    for s in run.steps:
        alpha = hist[s.epoch]["d2l_alpha"]
        if alpha >= 1.0:
            assert _close(s.out.loss, F.cross_entropy(s.logits().float(), s.labels))
        else:
            switched += 1
            p = s.logits().float().softmax(1)
            k = p.shape[1]
            target = alpha * F.one_hot(s.labels, k) + (1 - alpha) * F.one_hot(p.argmax(1), k)
            want = -(target * p.clamp(1e-7, 1 - 1e-7).log()).sum(1).mean()
            assert _close(s.out.loss, want)  # bootstrapping towards the prediction
    assert switched > 0 and 0 < hist[-1]["d2l_alpha"] < 1


def rule_dividemix(run: Recorded) -> None:
    m = run.method
    warm = m.config.warm_up
    prob = run.state["prob"]
    assert run.state["num_hist"] == len(run.result.history) - warm
    assert ((prob >= 0) & (prob <= 1)).all() and not torch.equal(prob, torch.ones_like(prob))
    sel_all = torch.cat([s.out.selected for s in run.past(warm)])
    last = len(run.result.history) - 1
    for s in run.past(warm):
        assert torch.equal(s.out.selected, s.out.weights > m.p_threshold)
        if s.epoch == last:  # network 1 trains on network 2's division of this epoch
            assert torch.equal(s.out.weights, prob[1, s.index])
    assert 0 < int(sel_all.sum()) < len(sel_all)  # the GMM division splits the samples
    for s in run.steps[: len(run.steps) - len(run.past(warm))]:
        assert s.out.selected is None  # warm-up: cross-entropy of both networks
        assert _close(
            s.out.loss,
            F.cross_entropy(s.logits("net1").float(), s.labels)
            + F.cross_entropy(s.logits("net2").float(), s.labels),
        )


def rule_elr(run: Recorded) -> None:
    c = run.method.config
    t = run.state["targets"]  # every sample updated once per epoch: Σ_k t = 1 − β^epochs
    assert _close(t.sum(1), torch.full((len(t),), 1 - c.beta ** len(run.result.history)))
    replay = torch.zeros_like(t)  # the targets replayed from the recorded logits
    for s in run.steps:
        p = s.logits().float().softmax(1).clamp(1e-4, 1 - 1e-4)
        ti = c.beta * replay[s.index] + (1 - c.beta) * p / p.sum(1, keepdim=True)
        replay[s.index] = ti
        reg = (1 - (ti * p).sum(1)).log().mean()
        assert _close(s.out.loss, F.cross_entropy(s.logits().float(), s.labels) + c.lam * reg)
        assert torch.equal(s.out.selected, ti.argmax(1) == s.labels)
    assert _close(replay, t)
    sel = torch.cat([s.out.selected for s in run.past(1)])
    assert 0 < int(sel.sum()) < len(sel)  # the targets disagree with some given labels


def rule_elr_plus(run: Recorded) -> None:
    m = run.method
    beta = m.config.beta
    t = run.state["targets"]
    assert _close(t.sum(2), torch.full(t.shape[:2], 1 - beta ** len(run.result.history)))
    assert run.state["steps"] == len(run.steps)  # every optimizer step reached the EMAs
    for k, net in m.models.items():
        live, ema = net.state_dict(), run.state["emas"][k]
        assert any(not torch.equal(live[p], ema[p]) for p in live if live[p].is_floating_point())
    sel = torch.cat([s.out.selected for s in run.past(1)])
    assert 0 < int(sel.sum()) < len(sel)


def rule_f_correction(run: Recorded) -> None:
    t = run.state["T"]
    k = t.shape[0]
    assert _close(t.sum(1), torch.ones(k)) and (t >= 0).all()
    assert not torch.equal(t, torch.eye(k))  # estimated in prepare(), before epoch 0
    assert _close(t @ run.state["T_inv"], torch.eye(k), 1e-3)
    for s in run.steps:
        p = s.logits().float().softmax(1).clamp(1e-7, 1 - 1e-7)
        want = -(p @ t).gather(1, s.labels[:, None]).log().mean()  # −log (p̂ᵀ T̂)_ỹ
        assert _close(s.out.loss, want)


def rule_incv(run: Recorded) -> None:
    m = run.method
    select, cand = run.state["select"], run.state["candidate"]
    n = len(select)
    assert 0 < int(select.sum()) < n and not (select & cand).any()
    joined = 0
    for s in run.steps:
        assert select[s.index].all()  # the engine iterates S only
        n_keep = int(round(len(s.index) * (1 - m.forget_rate(s.epoch))))
        assert int(s.out.selected.sum()) == n_keep
        extra = s.index_after[len(s.index) :]
        assert cand[extra].all()  # the joined C-batch holds candidates only
        if s.epoch > m.e_warm and m.c_batch > 0:
            assert 0 < len(extra) <= m.c_batch  # the C loader's last batch may be short
            joined += 1
        else:
            assert len(extra) == 0
        if s.epoch >= 1:  # forget rate ε_S > 0 (T_k = 1): a strict subset of the S-batch
            assert n_keep < len(s.index)
    assert joined == len(run.past(m.e_warm + 1)) > 0


def _rule_meta_weights(run: Recorded) -> None:
    """L2R/IEG: w = max(−∇ε, 0)/(Σ + 1e-5) ≥ 0, summing to 1 (or 0), selected = w > 0."""
    strict = 0
    for s in run.steps:
        w = s.out.weights
        total = float(w.sum())
        assert (w >= 0).all() and (total == 0 or abs(total - 1) < 1e-3), total
        assert torch.equal(s.out.selected, w > 0)
        assert torch.isfinite(s.out.loss)
        strict += 0 < int((w > 0).sum()) < len(w)
    assert strict > 0


def rule_l2r(run: Recorded) -> None:
    _rule_meta_weights(run)
    assert run.state["probe_step"] == len(run.steps)
    assert run.state["ema"]["num_updates"] == len(run.steps)  # after_step: one per step


def rule_ieg(run: Recorded) -> None:
    _rule_meta_weights(run)
    assert run.state["steps"] == run.state["probe_step"] == len(run.steps)
    relabelled = sum(int((s.out.new_labels != s.labels).sum()) for s in run.steps)
    assert relabelled > 0  # λ* = 0 takes the guessed label


def rule_mentornet(run: Recorded) -> None:
    m = run.method
    c = m.config
    lam = torch.zeros(())  # λ replayed: EMA of the batch losses' p-th percentile
    agree = total = 0
    for s in run.steps:
        ce = _ce(s, "net")
        lam = lam * c.ema_decay + (1 - c.ema_decay) * ce.quantile(c.p, interpolation="nearest")
        pct = int(100 * s.epoch / len(run.result.history))
        v, w = s.out.score, s.out.weights
        assert ((v >= 0) & (v <= 1)).all() and torch.equal(s.out.selected, v >= 0.5)
        keep = int(len(v) * (1 - (0.5 if pct < 17 else 0.05)))  # example dropout 0.5,17,0.05,83
        assert int((w > 0).sum()) == keep and _close(w[w > 0], v[w > 0])
        if 18 < pct < 90:  # self-paced curriculum: v* = 1[ℓ − λ ≤ 0], imitated by the mentor
            agree += int((s.out.selected == (ce - lam <= 0)).sum())
            total += len(v)
    assert total > 0 and agree / total > 0.9, (agree, total)
    assert _close(run.state["loss_ema"], lam)


def _sop_init(run: Recorded) -> tuple[torch.Tensor, torch.Tensor]:
    ctx, c = run.method.ctx, run.method.config
    g = torch.Generator().manual_seed(ctx.seed + 4242)
    u = torch.randn(ctx.num_samples, 1, generator=g) * c.init_std
    return u, torch.randn(ctx.num_samples, ctx.num_classes, generator=g) * c.init_std


def rule_sop(run: Recorded) -> None:
    u0, v0 = _sop_init(run)
    u, v = run.state["u"], run.state["v"]
    assert (u != u0).all() and (v != v0).any()  # every sample's u moved
    for s in run.steps:
        u2 = 1 - s.out.score
        assert torch.equal(s.out.selected, u2 < 0.5) and torch.isfinite(s.out.loss)


def rule_sop_replayed(run: Recorded) -> None:
    """SOP: the loss and u, v's own SGD steps replayed from the recorded logits."""
    rule_sop(run)
    c, eps = run.method.config, 1e-4
    u, v = _sop_init(run)
    for s in run.steps:
        z = s.logits().float()
        y = F.one_hot(s.labels, z.shape[1]).float()
        ub, vb = u[s.index].requires_grad_(True), v[s.index].requires_grad_(True)
        us, vs = (ub**2 * y).clamp(0, 1 - eps), (vb**2 * (1 - y)).clamp(0, 1 - eps)
        pred = (z.softmax(1) + us - vs.detach()).clamp_min(eps)
        pred = (pred / pred.sum(1, keepdim=True)).clamp(eps, 1)
        ce = -(y * pred.log()).sum(1).mean()  # L_CE: the network and u
        hard = F.one_hot(z.argmax(1), z.shape[1]).float()
        mse = ((hard + us.detach() - vs - y) ** 2).sum() / len(y)  # L_MSE: v only
        assert _close(s.out.loss, ce)
        (gu,), (gv,) = torch.autograd.grad(ce, ub), torch.autograd.grad(mse, vb)
        with torch.no_grad():
            u[s.index] = ub - c.lr_u * gu
            v[s.index] = vb - c.lr_v * gv
    assert torch.allclose(u, run.state["u"], rtol=1e-4, atol=0)
    assert torch.allclose(v, run.state["v"], rtol=1e-4, atol=0)


def rule_selfie(run: Recorded) -> None:
    m = run.method
    warm = m.config.warm_up
    relabelled = 0
    for s in run.steps:
        b = len(s.index)
        if s.epoch < warm:
            assert s.out.selected is None
            continue
        tau = run.result.history[s.epoch]["tau"]  # τ of the round (updated at its end)
        n_clean = math.ceil((1 - tau) * b - 1e-9)
        sel, new = s.out.selected, s.out.new_labels
        changed = new != s.labels
        if s.epoch == warm:  # histories hold one prediction of q = 2: the small-loss set only
            assert int(sel.sum()) == n_clean < b and not changed.any()
            assert _ranked_by_score(s)
        else:  # R ∪ C: at least the small-loss set, relabelled samples among them
            assert int(sel.sum()) >= n_clean
        relabelled += int((changed & sel).sum())
    assert relabelled > 0
    corrected = run.state["corrected"]
    assert (corrected >= 0).any() and ((corrected >= -1) & (corrected < 4)).all()


RULES = {
    "active-bias": rule_active_bias,
    "coteaching": rule_coteaching,
    "coteaching-plus": rule_coteaching_plus,
    "d2l": rule_d2l,
    "decoupling": rule_decoupling,
    "dividemix": rule_dividemix,
    "elr": rule_elr,
    "elr-plus": rule_elr_plus,
    "f-correction": rule_f_correction,
    "gce": rule_gce,
    "ieg": rule_ieg,
    "incv": rule_incv,
    "jocor": rule_jocor,
    "l2r": rule_l2r,
    "mentornet": rule_mentornet,
    "sce": rule_sce,
    "selfie": rule_selfie,
    "sop": rule_sop_replayed,
    "sop-plus": rule_sop,
    "standard": rule_standard,
}


def test_every_method_has_a_rule():
    """A newly registered method needs its entry here (so the tests below cover it)."""
    assert sorted(RULES) == sorted(METHOD_NAMES)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_rule_past_warm_up(name, full_run):
    run = full_run(name)
    m = run.method
    per_epoch = len(m.epoch_loader(m.ctx.loader))  # INCV: the S-batches
    assert [s.epoch for s in run.steps] == [
        e for e in range(len(run.result.history)) for _ in range(per_epoch)
    ]
    assert all(torch.isfinite(s.out.loss) for s in run.steps)
    RULES[name](run)


# ---------------------------------------------------------------------------- 3. resume


def _metrics(run_dir) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines if x]


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_resume_equals_uninterrupted(name, full_run, interrupted, tmp_path):
    from noisyfit.engine.checkpoint import load_checkpoint

    full = full_run(name)
    cut = spec(name)["cut"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cut_dir = interrupted(name, cut, **run_kwargs(name, tmp_path), name="cut")
        assert load_checkpoint(cut_dir / "checkpoint.pt")["epoch"] == cut - 1
        resumed = noisyfit.train(resume=cut_dir, report=False)
    want, got = _metrics(full.result.run_dir), _metrics(cut_dir)
    assert len(got) == len(want) == len(full.result.history)
    for a, b in zip(want, got):
        assert a == b, {
            k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)
        }
    for k, w in full.weights.items():
        assert_same_state(w, resumed.method.models[k].state_dict(), f"{name} weights of {k}")
    assert_same_state(full.state, resumed.method.state_dict(), f"{name} state")


@pytest.mark.parametrize(
    "name,new_keys", [("incv", ("c_epoch", "c_pos")), ("f-correction", ("stage1_epoch",))]
)
def test_checkpoints_from_before_the_added_state_still_load(name, new_keys, full_run):
    """INCV's C-loader position and F-correction's stage-1 epoch joined the state later;
    a checkpoint without them loads (the C loader then starts over, the epoch is unknown)."""
    run = full_run(name)
    old = {k: v for k, v in run.state.items() if k not in new_keys}
    assert len(old) < len(run.state)
    b = build_method(name, dataclasses.replace(run.method.ctx), spec(name)["options"])
    b.load_state_dict(_through_checkpoint(old))
    got = b.state_dict()
    assert_same_state(old, {k: v for k, v in got.items() if k not in new_keys}, name)
    assert all(got[k] in (0, None) for k in new_keys)


# ---------------------------------------------------------------------------- 2. round trip


def _through_checkpoint(state: dict) -> dict:
    """``state`` after torch.save and a ``weights_only`` load (what a checkpoint keeps)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_state_round_trips_into_a_fresh_instance(name, full_run):
    run = full_run(name)
    a = run.method  # stepped once more below: this test comes last in the module
    torch.manual_seed(123)  # other initial weights than the run's
    b = build_method(name, dataclasses.replace(a.ctx), spec(name)["options"])
    for m in b.models.values():
        assert all(p.device.type == "cpu" for p in m.parameters())
    saved = a.state_dict()
    if _flat(saved):  # the fresh instance starts elsewhere (so the test can fail)
        assert any(
            not _same(x, y) for x, y in zip(_flat(saved).values(), _flat(b.state_dict()).values())
        )
    for k, net in a.models.items():
        b.models[k].load_state_dict(_through_checkpoint(net.state_dict()))
    b.load_state_dict(_through_checkpoint(saved))
    assert_same_state(saved, b.state_dict(), f"{name} state after loading")

    x = next(iter(a.ctx.loader.epoch(0))).x
    a.eval()
    b.eval()
    with torch.no_grad():
        za, zb = a.eval_logits(x), b.eval_logits(x)
    assert za.keys() == zb.keys() and all(torch.equal(za[k], zb[k]) for k in za)

    # the next training step is the same (per-sample state, counters, probe stream, EMAs)
    last = len(run.result.history) - 1
    if a.optimizer is not None:  # meta steps read the optimizer (its momentum buffers)
        b.optimizer = type(a.optimizer)(b.parameters(), **a.optimizer.defaults)
        b.optimizer.load_state_dict(a.optimizer.state_dict())
    outs = []
    for m in (a, b):
        m.train()
        torch.manual_seed(7)
        m.on_epoch_start(last)
        batch = next(iter(m.epoch_loader(m.ctx.loader).epoch(last)))
        outs.append(m.training_step(batch, last))
    for f in dataclasses.fields(StepOutput):
        va, vb = getattr(outs[0], f.name), getattr(outs[1], f.name)
        assert (va is None) == (vb is None), f.name
        if va is not None:
            assert torch.equal(va, vb), f.name
