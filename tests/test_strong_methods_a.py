"""DivideMix, ELR, ELR+ and the engine's --ema / --mixup add-ons (issue 14, part A).

Rules are checked against direct formulas on hand-built inputs; the runs use the tiny
``synthetic`` dataset and ``cnn-tiny`` (seconds each).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import noisyfit
from noisyfit.data.loader import Batch, DeviceLoader
from noisyfit.engine.checkpoint import load_checkpoint
from noisyfit.engine.ema import WeightAverage
from noisyfit.methods import METHODS, ConfigError, Context, _builtin, build_method  # noqa: F401
from noisyfit.methods.base import Mix
from noisyfit.methods.dividemix import (
    DivideMix,
    gmm_clean_probability,
    linear_rampup,
    mixmatch_loss,
    preset_for,
    sharpen,
)
from noisyfit.methods.elr_plus import sigmoid_rampup
from noisyfit.models import build_model

TINY = dict(dataset="synthetic", model="cnn-tiny", progress=False, batch_size=64, report=False)
NEW = {"elr": {}, "elr-plus": {}, "dividemix": {"warm_up": "1"}}


def _linear_ctx(n=6, d=4, k=3, loader=None, seed=0):
    torch.manual_seed(seed)
    return Context(
        num_classes=k,
        num_samples=n,
        input_shape=(d,),
        epochs=2,
        batch_size=n,
        device=torch.device("cpu"),
        make_model=lambda: nn.Linear(d, k),
        loader=loader,
    )


# ---------------------------------------------------------------------------- ELR


def test_elr_loss_and_target_update_equal_the_direct_formula():
    beta, lam = 0.7, 3.0
    ctx = _linear_ctx()
    m = build_method("elr", ctx, {"beta": str(beta), "lam": str(lam)})
    x = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    idx = torch.tensor([5, 3, 1, 0, 2, 4])
    targets = torch.zeros(6, 3)
    for _ in range(2):  # the second step uses the first step's targets
        out = m.training_step(Batch(idx, x, y), 0)
        with torch.no_grad():
            z = m.models["net"](x)
        total_ce, total_reg = 0.0, 0.0
        for j in range(6):
            p = [min(max(v, 1e-4), 1 - 1e-4) for v in torch.softmax(z[j], 0).tolist()]
            s = sum(p)
            i = int(idx[j])
            targets[i] = torch.tensor([beta * targets[i, c].item() + (1 - beta) * p[c] / s
                                       for c in range(3)])  # fmt: skip
            total_ce += -math.log(math.exp(z[j, y[j]]) / sum(math.exp(v) for v in z[j]))
            total_reg += math.log(1 - sum(targets[i, c].item() * p[c] for c in range(3)))
        want = total_ce / 6 + lam * total_reg / 6
        assert out.loss.item() == pytest.approx(want, rel=1e-5)
        torch.testing.assert_close(m.targets, targets)
        assert torch.equal(out.selected, targets[idx].argmax(1) == y)
        torch.testing.assert_close(out.score, targets[idx, y])


def test_elr_under_mixup_uses_mixed_labels_and_mixed_targets():
    ctx = _linear_ctx()
    m = build_method("elr", ctx)
    x, y, idx = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6)
    perm = torch.tensor([1, 0, 3, 2, 5, 4])
    m.mix = Mix(lam=torch.tensor(0.7), perm=perm)
    out = m.training_step(Batch(idx, x, y), 0)
    z = m.models["net"](x).detach()
    p = z.softmax(1).clamp(1e-4, 1 - 1e-4)
    t = m.targets[idx]
    ce = 0.7 * F.cross_entropy(z, y) + 0.3 * F.cross_entropy(z, y[perm])
    q = 0.7 * t + 0.3 * t[perm]
    reg = (1 - (q * p).sum(1)).log().mean()
    assert out.loss.item() == pytest.approx((ce + 3.0 * reg).item(), rel=1e-5)


def test_mix_ce_equals_cross_entropy_against_the_mixed_one_hot():
    z = torch.randn(5, 4)
    y = torch.tensor([0, 1, 2, 3, 0])
    mix = Mix(lam=torch.tensor(0.3), perm=torch.tensor([4, 3, 2, 1, 0]))
    soft = mix.targets(F.one_hot(y, 4).float())
    want = -(soft * z.log_softmax(1)).sum(1)
    torch.testing.assert_close(mix.ce(z, y), want)
    torch.testing.assert_close(mix.inputs(z), 0.3 * z + 0.7 * z[mix.perm])


# ---------------------------------------------------------------------------- ELR+


def test_sigmoid_rampup_is_the_codes():
    assert sigmoid_rampup(5, 0) == 1.0
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(20, 10) == 1.0


def test_elr_plus_targets_come_from_the_partners_ema_and_the_ema_follows_the_step():
    ctx = _linear_ctx()
    opts = {"beta": "0.6", "alpha": "0", "ema_alpha": "0.9", "ema_step": "0"}
    m = build_method("elr-plus", ctx, opts)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    x, y, idx = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6)
    ema2_before = m.emas["net2"](x).detach().softmax(1)
    ema1_before = m.emas["net1"](x).detach().softmax(1)
    out = m.training_step(Batch(idx, x, y), 0)
    torch.testing.assert_close(m.targets[0], 0.4 * ema2_before)  # t⁽¹⁾ from ē₂
    torch.testing.assert_close(m.targets[1], 0.4 * ema1_before)
    old = [e.detach().clone() for e in m.emas["net1"].parameters()]
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    m.after_step()  # the engine's hook after the optimizer step: the EMA update
    for e, o, p in zip(m.emas["net1"].parameters(), old, m.models["net1"].parameters()):
        torch.testing.assert_close(e, 0.9 * o + 0.1 * p.detach())
    assert m.steps == 1
    # the ELR term with the partner's targets (no mixup): CE + λ·mean log(1 − ⟨t, p⟩)
    m2 = build_method("elr-plus", _linear_ctx(seed=1), opts)
    z1 = m2.models["net1"](x).detach()
    t1 = 0.4 * m2.emas["net2"](x).detach().softmax(1)
    z2 = m2.models["net2"](x).detach()
    t2 = 0.4 * m2.emas["net1"](x).detach().softmax(1)
    out2 = m2.training_step(Batch(idx, x, y), 0)

    def one(z, t):
        p = z.softmax(1).clamp(1e-4, 1 - 1e-4)
        return F.cross_entropy(z, y) + 3.0 * (1 - (t * p).sum(1)).log().mean()

    assert out2.loss.item() == pytest.approx((one(z1, t1) + one(z2, t2)).item(), rel=1e-5)


# ---------------------------------------------------------------------------- DivideMix


def test_gmm_splits_a_hand_built_bimodal_loss_vector():
    g = torch.Generator().manual_seed(0)
    clean = 0.1 + 0.03 * torch.randn(300, generator=g)
    noisy = 0.8 + 0.05 * torch.randn(100, generator=g)
    prob = gmm_clean_probability(torch.cat([noisy[:50], clean, noisy[50:]]))
    assert prob.shape == (400,)
    assert (prob[50:350] > 0.99).all() and (torch.cat([prob[:50], prob[350:]]) < 0.01).all()


def test_gmm_posterior_equals_sklearns_at_convergence():
    sklearn = pytest.importorskip("sklearn.mixture")
    g = torch.Generator().manual_seed(1)
    x = torch.cat(
        [0.2 + 0.1 * torch.randn(200, generator=g), 0.6 + 0.2 * torch.randn(80, generator=g)]
    )
    x = (x - x.min()) / (x.max() - x.min())
    ours = gmm_clean_probability(x, max_iter=100, tol=1e-10)
    # run to convergence, both EMs reach the same fixed point (sklearn starts from k-means)
    gm = sklearn.GaussianMixture(2, max_iter=2000, tol=1e-9, reg_covar=5e-4, random_state=0)
    gm.fit(x.numpy()[:, None].astype(np.float64))
    theirs = gm.predict_proba(x.numpy()[:, None])[:, gm.means_.argmin()]
    np.testing.assert_allclose(ours.numpy(), theirs, atol=2e-3)


def test_sharpen_and_mixmatch_loss_by_hand():
    p = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    torch.testing.assert_close(
        sharpen(p, 0.5), torch.tensor([[0.36 / 0.52, 0.16 / 0.52], [0.5, 0.5]])
    )
    z = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.0, 1.0]])
    lx, lu, pen = mixmatch_loss(z, t, 2)
    order = [0, 2, 1]  # the labelled rows marked anywhere give the same losses
    mask = torch.tensor([True, False, True])
    for a, b in zip(mixmatch_loss(z[order], t[order], mask), (lx, lu, pen)):
        torch.testing.assert_close(a, b)
    logp = z.log_softmax(1)
    assert lx.item() == pytest.approx(
        -(logp[0, 0] + 0.3 * logp[1, 0] + 0.7 * logp[1, 1]).item() / 2
    )
    q = z.softmax(1)
    assert lu.item() == pytest.approx((((q[2, 0] - 0) ** 2 + (q[2, 1] - 1) ** 2) / 2).item())
    pbar = q.mean(0)
    assert pen.item() == pytest.approx((0.5 * (0.5 / pbar).log()).sum().item())
    assert linear_rampup(10.5, 10, 16) == pytest.approx(0.5 / 16) and linear_rampup(3, 10) == 0


def test_dividemix_presets_are_the_papers():
    assert preset_for(10, "symmetric", 0.2) == (0.0, 0.5)
    assert preset_for(10, "symmetric", 0.8) == (25.0, 0.5)
    assert preset_for(10, "uniform", 0.9) == (50.0, 0.6)
    assert preset_for(10, "pair", 0.4) == (0.0, 0.5)
    assert preset_for(100, "symmetric", 0.5) == (150.0, 0.5)
    assert preset_for(100, "symmetric", 0.2) == (25.0, 0.5)


def _dividemix_on_arrays(n=40, k=3, d=5, warm_up=0, **opts):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    loader = DeviceLoader(x, y.numpy(), batch_size=10, normalize="none", seed=0)
    ctx = _linear_ctx(n=n, d=d, k=k, loader=loader)
    options = {"warm_up": str(warm_up), **{a: str(b) for a, b in opts.items()}}
    return build_method("dividemix", ctx, options), loader


def test_dividemix_co_divide_uses_the_gmm_of_each_networks_normalized_losses():
    m, loader = _dividemix_on_arrays(p_threshold=0.5, lambda_u=25)
    m.on_epoch_start(0)
    for a, net in enumerate(m.models.values()):
        with torch.no_grad():
            loss = F.cross_entropy(net(loader.x.float()), loader.labels, reduction="none")
        norm = (loss - loss.min()) / (loss.max() - loss.min())
        torch.testing.assert_close(m.prob[a], gmm_clean_probability(norm))
    batch = next(iter(loader.epoch(0)))
    out = m.training_step(batch, 0)
    w2 = m.prob[1, batch.index]  # network 1 trains on network 2's division
    assert torch.equal(out.selected, w2 > 0.5)
    torch.testing.assert_close(out.weights, w2)
    assert torch.isfinite(out.loss)


def test_dividemix_semi_loss_equals_a_per_sample_reference():
    m, loader = _dividemix_on_arrays(temperature=0.5, alpha=4)
    net, other = m.models["net1"], m.models["net2"]
    batch = next(iter(loader.epoch(0)))
    x, y = batch.x, batch.labels
    w = torch.linspace(0.1, 0.9, len(y))
    lab = w > 0.45
    with torch.no_grad():
        p_own, p_oth = net(x).softmax(1), other(x).softmax(1)
    torch.manual_seed(7)
    got = m._semi_loss(net, x, x, y, w, lab, p_own, p_oth, 25.0)
    # reference per sample: both views of every sample in batch order (the official code puts
    # the labelled part first; the rows and the mixing with a random partner are the same, the
    # labelled rows marked instead of gathered), then λ, then the permutation
    rows_x, rows_t, rows_lab = [], [], []
    for _view in range(2):
        for i in range(len(y)):
            if lab[i]:
                r = [w[i] * (c == y[i]) + (1 - w[i]) * p_own[i, c] for c in range(3)]
            else:
                r = [(p_own[i, c] + p_oth[i, c]) / 2 for c in range(3)]
            r = [v**2 for v in r]  # 1/T = 2
            rows_t.append(torch.stack([torch.as_tensor(v) / sum(r) for v in r]).float())
            rows_x.append(x[i])
            rows_lab.append(bool(lab[i]))
    torch.manual_seed(7)
    a = torch.tensor(4.0)
    lam = torch.distributions.Beta(a, a).sample()
    lam = max(lam, 1 - lam)
    inputs, targets = torch.stack(rows_x), torch.stack(rows_t)
    perm = torch.randperm(len(inputs))
    logits = net(lam * inputs + (1 - lam) * inputs[perm])
    tm = lam * targets + (1 - lam) * targets[perm]
    is_x = torch.tensor(rows_lab)
    assert 0 < int(is_x.sum()) < len(is_x)  # both parts present
    logp = logits.log_softmax(1)
    lx = -(tm[is_x] * logp[is_x]).sum(1).mean()
    lu = ((logp[~is_x].exp() - tm[~is_x]) ** 2).mean()
    pbar = logp.exp().mean(0)
    pen = ((1 / 3) * ((1 / 3) / pbar).log()).sum()
    assert got.item() == pytest.approx((lx + 25.0 * lu + pen).item(), rel=1e-5)


def test_dividemix_refuses_bad_options():
    with pytest.raises(ConfigError, match="p_threshold"):
        _dividemix_on_arrays(p_threshold=1.5)


# ---------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", sorted(NEW))
def test_new_method_state_round_trips_into_a_fresh_instance(name):
    """Past warm-up, a fresh instance loaded with the state (and weights) steps identically."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 4, (32,), generator=g)
    loader = DeviceLoader(x, y.numpy(), batch_size=8, seed=0)

    def make():
        torch.manual_seed(0)
        ctx = Context(
            num_classes=4,
            num_samples=32,
            input_shape=(1, 8, 8),
            epochs=3,
            batch_size=8,
            device=torch.device("cpu"),
            noise_rate=0.4,
            make_model=lambda: build_model("cnn-tiny", 4, (1, 8, 8)),
            loader=loader,
        )
        return build_method(name, ctx, {"warm_up": "0"} if name == "dividemix" else {})

    a = make()
    a.train()
    opt = torch.optim.SGD(a.parameters(), lr=0.1)
    for epoch in range(2):
        a.on_epoch_start(epoch)
        for b in loader.epoch(epoch):
            out = a.training_step(b, epoch)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
        a.on_epoch_end(epoch)
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in a.state_dict().items()}
    fresh = make()
    for k, net in fresh.models.items():
        net.load_state_dict(a.models[k].state_dict())
    fresh.load_state_dict(state)
    for k in a.state_names:
        va, vb = getattr(a, k), getattr(fresh, k)
        assert torch.equal(va, vb) if torch.is_tensor(va) else va == vb, k
    assert any(
        torch.is_tensor(getattr(a, k)) and getattr(a, k).abs().sum() > 0 for k in a.state_names
    )
    fresh.train()
    outs = []
    for m in (a, fresh):
        m.on_epoch_start(2)
        torch.manual_seed(3)
        outs.append(m.training_step(next(iter(loader.epoch(2))), 2))
    assert outs[0].loss.item() == outs[1].loss.item()
    assert outs[0].selected is not None and torch.equal(outs[0].selected, outs[1].selected)


class _Stop(Exception):
    pass


@pytest.mark.parametrize(
    "name,extra",
    [
        ("dividemix", {}),
        ("elr", {"mixup": 1.0}),
        ("elr-plus", {}),
        ("standard", {"ema": 0.9, "mixup": 0.5}),
        ("dividemix", {"ema": 0.9}),
    ],
)
def test_resume_equals_uninterrupted(tmp_path, interrupted, name, extra):
    kw = dict(
        **TINY,
        epochs=3,
        out=str(tmp_path),
        deterministic=True,
        augment=True,
        noise_rate=0.4,
        method_options=NEW.get(name, {}),
        **extra,
    )
    full = noisyfit.train(**kw, method=name, name="full")
    interrupted(name, 1, **kw, name="cut")
    resumed = noisyfit.train(resume=tmp_path / "cut", report=False)
    assert len(resumed.history) == 3
    for a, b in zip(full.history, resumed.history):
        for key in ("train_loss", "test_loss", "test_acc", "label_precision", "label_recall"):
            assert a[key] == b[key], (key, a["epoch"])
    for k, net in full.method.models.items():
        wa, wb = net.state_dict(), resumed.method.models[k].state_dict()
        assert all(torch.equal(wa[p], wb[p]) for p in wa)
    if name != "standard":  # the methods report a selection past warm-up
        assert full.history[-1]["selected_frac"] < 1.0
    if name == "dividemix":  # the GMM division is better than chance already
        assert full.history[-1]["label_precision"] > full.history[-1]["clean_frac_seen"]


# ---------------------------------------------------------------------------- add-ons


def test_weight_average_is_the_ema_of_the_steps():
    torch.manual_seed(0)
    net = nn.Linear(2, 2)

    class M:
        models = {"net": net}

    method = M()
    avg = WeightAverage(method, 0.75)
    seen = []
    for _ in range(3):
        with torch.no_grad():
            net.weight.add_(torch.randn(2, 2))
        seen.append(net.weight.detach().clone())
        avg.update()
    want = seen[0]  # the first update copies
    for w in seen[1:]:
        want = 0.75 * want + 0.25 * w
    torch.testing.assert_close(avg.averaged["net"].module.weight, want)
    with avg.swapped():
        assert method.models["net"] is avg.averaged["net"].module
    assert method.models["net"] is net


def test_ema_run_evaluates_and_saves_the_averaged_network(tmp_path):
    r = noisyfit.train(**TINY, epochs=2, ema=0.9, out=str(tmp_path), name="ema", noise_rate=0.3)
    h = r.history[-1]
    state = load_checkpoint(r.run_dir / "checkpoint.pt")
    assert set(state["ema"]) == {"net"}
    net = build_model("cnn-tiny", 4, (1, 8, 8))
    avg = {
        k[len("module.") :]: v for k, v in state["ema"]["net"].items() if k.startswith("module.")
    }
    net.load_state_dict(avg)
    live = state["models"]["net"]
    assert any(not torch.equal(avg[k], live[k]) for k in live)  # not the live weights
    from noisyfit.api import build_context, prepare_data

    cfg = noisyfit.config.resolve_config(
        None, **{k: v for k, v in TINY.items() if k != "report"}, epochs=2, noise_rate=0.3
    )
    _, test = build_context(cfg, prepare_data(cfg), torch.device("cpu"))
    net.eval()
    correct = sum(int((net(b.x).argmax(1) == b.labels).sum()) for b in test.epoch(0))
    assert h["test_acc"] == pytest.approx(correct / test.num_samples)
    assert h["test_acc_live"] is not None


def test_mixup_is_refused_where_the_rule_cannot_take_it(tmp_path):
    with pytest.raises(ConfigError, match="coteaching.*cannot train on mixed targets.*elr"):
        noisyfit.train(**TINY, method="coteaching", mixup=1.0, out=str(tmp_path), name="x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="mixup"):
        noisyfit.train(**TINY, mixup=-1.0, out=str(tmp_path), name="y")


def test_methods_declare_mixup_support():
    assert {n for n in METHODS.names() if METHODS.get(n).supports_mixup} >= {"standard", "elr"}
    assert not METHODS.get("dividemix").supports_mixup  # its own MixMatch
    assert not METHODS.get("elr-plus").supports_mixup  # its own mixup (alpha)
    assert isinstance(
        METHODS.get("dividemix")(DivideMix.Config(warm_up=0), _linear_ctx()), DivideMix
    )
