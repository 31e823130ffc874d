"""GCE, SCE, JoCoR, Co-teaching+, SOP, SOP+ (issue 14, part B): each rule against a
hand-computed or brute-force reference on tiny inputs, state round trips and resume."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import noisyfit
from noisyfit.data.loader import Batch
from noisyfit.engine.checkpoint import load_checkpoint
from noisyfit.methods import METHODS, Context, _builtin, build_method  # noqa: F401
from noisyfit.methods.coteaching_plus import coteaching_plus_loss
from noisyfit.methods.gce import gce_loss
from noisyfit.methods.jocor import jocor_loss
from noisyfit.methods.sce import sce_loss
from noisyfit.methods.sop import sop_losses
from noisyfit.models import build_model

NEW = ["gce", "sce", "jocor", "coteaching-plus", "sop", "sop-plus"]
TINY = dict(dataset="synthetic", model="cnn-tiny", progress=False, batch_size=64)


def _softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


# ---------------------------------------------------------------------------- losses


def test_gce_equals_the_formula_and_tends_to_ce():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [-2.0, 1.0, 0.0]])
    y = torch.tensor([0, 1, 2])
    for q in (0.7, 1.0):
        want = [(1 - _softmax(r)[c] ** q) / q for r, c in zip(logits.tolist(), y.tolist())]
        assert torch.allclose(gce_loss(logits, y, q), torch.tensor(want), atol=1e-6)
    # q → 0: cross-entropy ((1 − p^q)/q = −log p − q·log²p/2 + …)
    ce = F.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(gce_loss(logits, y, 1e-3), ce, atol=5e-3)


def test_sce_equals_alpha_ce_plus_beta_rce():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    y = torch.tensor([0, 1])
    a, b, log0 = 0.1, 1.0, math.log(1e-4)
    want = []
    for r, c in zip(logits.tolist(), y.tolist()):
        p = _softmax(r)
        ce = -math.log(p[c])
        rce = -sum(pk * (0.0 if k == c else log0) for k, pk in enumerate(p))
        want.append(a * ce + b * rce)
    got = sce_loss(logits, y, a, b, log0)
    assert torch.allclose(got, torch.tensor(want), atol=1e-5)
    # RCE = −A·(1 − p_y): with A = −4 (the paper's) the second row's term is 4·(1 − p_1)
    p1 = _softmax(logits[1].tolist())[1]
    only_rce = sce_loss(logits, y, 0.0, 1.0, -4.0)[1]
    assert abs(float(only_rce) - 4 * (1 - p1)) < 1e-5


# ---------------------------------------------------------------------------- JoCoR


def test_jocor_joint_loss_against_a_per_sample_loop():
    torch.manual_seed(0)
    l1 = torch.randn(6, 4, requires_grad=True)
    l2 = torch.randn(6, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    lam, k = 0.9, 4
    joint = []
    for i in range(6):
        p = _softmax(l1[i].tolist())
        q = _softmax(l2[i].tolist())
        ce = -math.log(p[y[i]]) - math.log(q[y[i]])
        kl_qp = sum(qk * math.log(qk / pk) for pk, qk in zip(p, q))
        kl_pq = sum(pk * math.log(pk / qk) for pk, qk in zip(p, q))
        joint.append((1 - lam) * ce + lam * (kl_qp + kl_pq))
    order = sorted(range(6), key=lambda i: joint[i])[:k]
    loss, keep, got = jocor_loss(l1, l2, y, k, lam)
    assert torch.allclose(got, torch.tensor(joint), atol=1e-5)
    assert sorted(keep.nonzero().squeeze(1).tolist()) == sorted(order)
    assert abs(float(loss) - sum(joint[i] for i in order) / k) < 1e-5
    loss.backward()  # both networks are trained on the same picks; dropped rows get no gradient
    dropped = [i for i in range(6) if i not in order]
    assert l1.grad[dropped].abs().max() == 0 and l2.grad[dropped].abs().max() == 0
    assert l1.grad[order].abs().min() > 0 or l2.grad[order].abs().sum() > 0


# ---------------------------------------------------------------------------- Co-teaching+


def test_coteaching_plus_exchanges_small_loss_picks_among_disagreements():
    # rows 0-3 disagree (net 1 predicts class 0, net 2 class 1); rows 4, 5 agree
    big = 4.0
    l1 = torch.zeros(6, 3)
    l2 = torch.zeros(6, 3)
    l1[:4, 0] = big
    l2[:4, 1] = big
    l1[4:, 2] = big
    l2[4:, 2] = big
    # labels: net 2's loss is smallest on rows 1 and 2 (label 1 = its prediction, then row 2's
    # smaller margin); net 1's smallest on rows 0 and 3 (label 0)
    y = torch.tensor([0, 1, 1, 0, 2, 2])
    l2[2, 1] = big - 1.0  # net 2 is less sure on row 2 than on row 1
    l1 = l1.requires_grad_()
    l2 = l2.requires_grad_()
    loss, sel = coteaching_plus_loss(l1, l2, y, rate=0.5, step=10**6, softmax_twice=False)
    # d = 4 disagreeing rows, keep int(0.5·4) = 2 each; net 1 trains on net 2's picks {1, 2}
    assert sel.tolist() == [False, True, True, False, False, False]
    ce1 = F.cross_entropy(l1, y, reduction="none")
    ce2 = F.cross_entropy(l2, y, reduction="none")
    want = (ce1[1] + ce1[2]) / 2 + (ce2[0] + ce2[3]) / 2
    assert torch.allclose(loss, want)
    # softmax twice (the code): the same picks, CE of the probabilities
    loss2, sel2 = coteaching_plus_loss(l1, l2, y, rate=0.5, step=10**6, softmax_twice=True)
    s1, s2 = torch.softmax(l1, 1), torch.softmax(l2, 1)
    w1 = F.cross_entropy(s1, y, reduction="none")
    w2 = F.cross_entropy(s2, y, reduction="none")
    assert torch.equal(sel2, sel) and torch.allclose(loss2, (w1[1] + w1[2] + w2[0] + w2[3]) / 2)


def test_coteaching_plus_without_disagreement_trains_all_until_step_5000():
    l1 = torch.tensor([[3.0, 0.0], [0.0, 3.0]], requires_grad=True)
    l2 = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 0])
    loss, sel = coteaching_plus_loss(l1, l2, y, 0.5, step=4999, softmax_twice=False)
    assert sel.all()
    assert torch.allclose(loss, F.cross_entropy(l1, y) + F.cross_entropy(l2, y))
    loss, sel = coteaching_plus_loss(l1, l2, y, 0.5, step=5000, softmax_twice=False)
    assert not sel.any() and float(loss) == 0.0


# ---------------------------------------------------------------------------- SOP


def _ctx(n=40, k=4, noise_rate=0.2):
    return Context(
        num_classes=k,
        num_samples=n,
        input_shape=(1, 8, 8),
        epochs=2,
        batch_size=8,
        device=torch.device("cpu"),
        noise_rate=noise_rate,
        make_model=lambda: build_model("cnn-tiny", k, (1, 8, 8)),
    )


def test_sop_losses_match_the_written_formula():
    torch.manual_seed(1)
    logits = torch.randn(3, 4)
    u = torch.tensor([[0.3], [0.9], [0.0]])
    v = torch.rand(3, 4) * 0.8
    y = torch.tensor([0, 2, 3])
    ce, mse, _ = sop_losses(logits, u, v, y)
    ces, mses = [], []
    for i in range(3):
        p = _softmax(logits[i].tolist())
        s = [
            min(u[i, 0].item() ** 2, 1 - 1e-4) if c == y[i] else -min(v[i, c].item() ** 2, 1 - 1e-4)
            for c in range(4)
        ]
        pred = [max(pc + sc, 1e-4) for pc, sc in zip(p, s)]
        pred = [max(min(x / sum(pred), 1.0), 1e-4) for x in pred]
        ces.append(-math.log(pred[y[i]]))
        hard = [1.0 if c == int(np.argmax(p)) else 0.0 for c in range(4)]
        onehot = [1.0 if c == y[i] else 0.0 for c in range(4)]
        mses.append(sum((h + sc - o) ** 2 for h, sc, o in zip(hard, s, onehot)))
    assert abs(float(ce) - sum(ces) / 3) < 1e-5
    assert abs(float(mse) - sum(mses) / 3) < 1e-5


def test_sop_u_v_step_equals_full_size_parameters_with_their_own_sgd():
    """The method's in-step update of u, v equals the code's nn.Parameter u, v (N rows) with
    one SGD optimizer each (no momentum, no decay) after one backward pass."""
    torch.manual_seed(0)
    ctx = _ctx()
    m = build_method("sop", ctx, {"lr_u": 3.0, "lr_v": 7.0, "init_std": 0.6})
    u0, v0 = m.u.clone(), m.v.clone()
    b = Batch(torch.tensor([5, 1, 30, 7]), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    m.train()
    out = m.training_step(b, 0)
    # the reference: full-size parameters, the same formula, autograd + SGD
    pu = torch.nn.Parameter(u0.clone())
    pv = torch.nn.Parameter(v0.clone())
    ou = torch.optim.SGD([pu], lr=3.0)
    ov = torch.optim.SGD([pv], lr=7.0)
    logits = m.models["net"](b.x).detach()
    ce, mse, _ = sop_losses(logits, pu[b.index], pv[b.index], b.labels)
    (ce + mse).backward()  # ce reaches only u, mse only v (the stop-gradients)
    ou.step()
    ov.step()
    assert torch.allclose(m.u, pu.detach(), atol=1e-6) and torch.allclose(m.v, pv.detach())
    rest = torch.ones(40, dtype=torch.bool)
    rest[b.index] = False
    assert torch.equal(m.u[rest], u0[rest]) and torch.equal(m.v[rest], v0[rest])
    assert not torch.equal(m.u[b.index], u0[b.index])
    # reported: clean while u² < 1/2, score 1 − u² (the u the step used)
    u2 = (u0[b.index, 0] ** 2).clamp(0, 1 - 1e-4)
    assert torch.equal(out.selected, u2 < 0.5) and torch.allclose(out.score, 1 - u2)


def test_sop_learns_large_u_on_wrong_labels(tmp_path):
    """Past warm-up (here from the first epoch) u² grows where the network cannot fit the given
    label: on a separable toy set with 25 % of the labels flipped, mean u² of the wrong labels
    ends far above that of the right ones, and the clean-label estimate selects the right ones."""
    res = noisyfit.train(
        **TINY,
        method="sop",
        method_options={"lr_u": 40},
        epochs=6,
        lr=0.05,
        noise="symmetric",
        noise_rate=0.25,
        checkpoint=False,
        out=str(tmp_path),
        name="sop",
    )
    m = res.method
    noisy = np.load(res.run_dir / "noisy_labels.npy")
    true = noisyfit.api.prepare_data(noisyfit.config.TrainConfig(**TINY)).dataset.labels
    wrong = torch.as_tensor(noisy != true)
    u2 = m.u.squeeze(1) ** 2
    assert float(u2[wrong].mean()) > 5 * float(u2[~wrong].mean())
    assert res.history[-1]["label_precision"] > res.history[0]["clean_frac_seen"]


# ---------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", NEW)
def test_state_round_trip_into_a_fresh_instance(name):
    torch.manual_seed(0)
    m = build_method(name, _ctx())
    m.train()
    for s in range(3):
        b = Batch(torch.arange(8) + 8 * s, torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,)))
        m.training_step(b, 1).loss.backward()
    fresh = build_method(name, _ctx())
    fresh.load_state_dict(m.state_dict())
    for k in m.state_names:
        a, c = getattr(m, k), getattr(fresh, k)
        assert torch.equal(a, c) if torch.is_tensor(a) else a == c
    for k, net in m.models.items():
        fresh.models[k].load_state_dict(net.state_dict())
    b = Batch(torch.arange(8), torch.randn(8, 1, 8, 8), torch.randint(0, 4, (8,)))
    torch.manual_seed(5)
    o1 = m.training_step(b, 1)
    torch.manual_seed(5)
    o2 = fresh.training_step(b, 1)
    assert torch.equal(o1.loss, o2.loss)
    if name in ("sop", "sop-plus"):
        assert torch.equal(m.u, fresh.u) and torch.equal(m.v, fresh.v)


@pytest.mark.parametrize("name", ["sop", "jocor", "coteaching-plus"])
def test_resume_equals_uninterrupted(name, tmp_path, interrupted):
    kw = dict(**TINY, epochs=3, out=str(tmp_path), deterministic=True)
    kw.update(noise_rate=0.3, augment=True, lr=0.03)
    full = noisyfit.train(**kw, method=name, name="full")
    interrupted(name, 1, **kw, name="cut")
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 0
    resumed = noisyfit.train(resume=tmp_path / "cut")
    for a, b in zip(full.history, resumed.history, strict=True):
        for key in ("train_loss", "test_acc", "label_precision", "label_recall"):
            assert a[key] == b[key], (key, a["epoch"])
    for k, net in full.method.models.items():
        wa, wb = net.state_dict(), resumed.method.models[k].state_dict()
        assert all(torch.equal(wa[p], wb[p]) for p in wa)
    for k in full.method.state_names:
        assert torch.equal(getattr(full.method, k), getattr(resumed.method, k))


# ---------------------------------------------------------------------------- CIFAR-N

from noisyfit import noise as noise_mod  # noqa: E402
from noisyfit.noise import CIFAR_N, NoiseError, inject_noise  # noqa: E402


def _cifar10n_file(folder, seed=0):
    """A file in the released CIFAR-10N format: torch.save of a dict of numpy arrays."""
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 10, 50000)
    d = {"clean_label": clean}
    for key, rate in [
        ("aggre_label", 0.09),
        ("random_label1", 0.17),
        ("random_label2", 0.18),
        ("random_label3", 0.18),
        ("worse_label", 0.40),
    ]:
        flip = rng.random(50000) < rate
        d[key] = np.where(flip, (clean + rng.integers(1, 10, 50000)) % 10, clean)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(d, folder / "CIFAR-10_human.pt")
    return d


@pytest.mark.parametrize("kind", [k for k in CIFAR_N if k.startswith("cifar10n")])
def test_cifar10n_sets_replay_the_released_arrays(kind, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(noise_mod, "_download", lambda *a: pytest.fail("must not download"))
    d = _cifar10n_file(tmp_path)
    key = CIFAR_N[kind][1]
    out = inject_noise(d["clean_label"], kind, num_classes=10, data_dir=tmp_path)
    assert np.array_equal(out.labels, d[key])
    assert out.manifest.realized_rate == pytest.approx(float((d[key] != d["clean_label"]).mean()))
    assert out.manifest.source_file == str(tmp_path / "CIFAR-10_human.pt")
    assert "CC BY-NC 4.0" in capsys.readouterr().out
    # a subset (--train-subset, a probe taken out) takes the rows of its source positions
    idx = np.array([3, 17, 49999, 0])
    sub = inject_noise(d["clean_label"][idx], kind, num_classes=10, data_dir=tmp_path,
                       source_index=idx)  # fmt: skip
    assert sub.labels.tolist() == d[key][idx].tolist()


def test_cifar_n_in_a_run_maps_the_subset_rows(tmp_path, monkeypatch):
    """Through prepare_data (a stand-in CIFAR-10 of 50 000 tiny images): the noisy labels of
    the run are the file's worse_label at the rows of train_index, found via $NOISYFIT_DATA."""
    from noisyfit import api
    from noisyfit.config import TrainConfig
    from noisyfit.data.base import Dataset

    d = _cifar10n_file(tmp_path / "cifar-n", seed=3)
    monkeypatch.setenv("NOISYFIT_DATA", str(tmp_path))
    fake = Dataset(
        name="cifar10",
        x=np.zeros((50000, 1, 2, 2), np.uint8),
        labels=d["clean_label"],
        test_x=np.zeros((10, 1, 2, 2), np.uint8),
        test_labels=np.arange(10),
        class_names=[str(i) for i in range(10)],
    )
    monkeypatch.setattr(api, "load_dataset", lambda *a, **k: fake)
    cfg = TrainConfig(dataset="cifar10", noise="cifar10n-worst", train_subset=1000)
    data = api.prepare_data(cfg)
    assert len(data.noisy.labels) == 1000
    assert np.array_equal(data.noisy.labels, d["worse_label"][data.source_index])
    assert np.array_equal(data.true, d["clean_label"][data.source_index])
    assert api._nominal_tau(cfg, data) == pytest.approx(
        float((d["worse_label"] != d["clean_label"])[data.source_index].mean())
    )


def test_cifar_n_errors_name_the_file_and_the_fix(tmp_path, monkeypatch):
    def offline(url, dest):
        raise OSError("network unreachable")

    monkeypatch.setattr(noise_mod, "_download", offline)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NOISYFIT_DATA", str(tmp_path / "data"))
    clean = np.zeros(50000, np.int64)
    with pytest.raises(NoiseError) as e:
        inject_noise(clean, "cifar10n-aggre", num_classes=10)
    msg = str(e.value)
    assert "CIFAR-10_human.pt was not found" in msg and "network unreachable" in msg
    assert "github.com/UCSC-REAL/cifar-10-100n/raw/main/data/CIFAR-10_human.pt" in msg
    assert str(tmp_path / "data" / "cifar-n" / "CIFAR-10_human.pt") in msg
    with pytest.raises(NoiseError, match="Use --dataset cifar10"):
        inject_noise(clean[:10], "cifar10n-aggre", num_classes=10, dataset="fashion-mnist")
    with pytest.raises(NoiseError, match="CIFAR-100 .K = 100."):
        inject_noise(clean, "cifar100n", num_classes=10)
    # the wrong image order: clean_label does not match the dataset's labels
    d = _cifar10n_file(tmp_path / "f")
    with pytest.raises(NoiseError, match="torchvision's CIFAR-10 training order"):
        inject_noise(d["clean_label"][::-1].copy(), "cifar10n-aggre", num_classes=10,
                     data_dir=tmp_path / "f")  # fmt: skip
    # not a label file (a pickled object the safe loader refuses)
    bad = tmp_path / "bad.pt"
    torch.save({"clean_label": np.zeros(3), "obj": object()}, bad)
    with pytest.raises(NoiseError, match="readable without arbitrary code"):
        inject_noise(clean, "cifar10n-aggre", num_classes=10, noise_file=bad)


def test_cifar100n_reads_noisy_label(tmp_path):
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 100, 50000)
    noisy = np.where(rng.random(50000) < 0.4, rng.integers(0, 100, 50000), clean)
    torch.save({"noisy_label": noisy, "clean_label": clean}, tmp_path / "CIFAR-100_human.pt")
    out = inject_noise(clean, "cifar100n", num_classes=100, data_dir=tmp_path)
    assert np.array_equal(out.labels, noisy)


def test_a_file_pickled_by_numpy_1_loads(tmp_path):
    """The released files predate numpy 2: their pickle names numpy.core.multiarray."""
    import zipfile

    from noisyfit.noise import load_cifar_n

    torch.save({"clean_label": np.arange(4), "aggre_label": np.arange(4)[::-1].copy()},
               tmp_path / "new.pt")  # fmt: skip
    with (
        zipfile.ZipFile(tmp_path / "new.pt") as zin,
        zipfile.ZipFile(tmp_path / "old.pt", "w") as zout,
    ):
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(item, data)
    d = load_cifar_n(tmp_path / "old.pt")
    assert d["aggre_label"].tolist() == [3, 2, 1, 0]


# ---------------------------------------------------------------------------- oracle


def test_bench_oracle_trains_standard_on_exactly_the_clean_rows(tmp_path):
    import csv

    import yaml

    from noisyfit import bench
    from noisyfit.api import prepare_data

    sweep = tmp_path / "s.yaml"
    config = {"dataset": "synthetic", "model": "cnn-tiny", "epochs": 1, "batch_size": 64}
    sweep.write_text(
        yaml.safe_dump(
            {
                "methods": ["standard"],
                "noise": ["symmetric:0.5", "pair:0.3"],
                "seeds": [0],
                "report": False,
                "oracle": True,
                "in_process": True,
                "config": config,
            }
        )
    )
    s = bench.load_sweep(sweep, tmp_path / "b")
    res = bench.run_sweep(s, log=None)
    assert set(res["status"].values()) == {"ran"}
    rows = list(csv.DictReader(open(tmp_path / "b" / "results.csv")))
    assert [(r["method"], r["noise"], r["noise_rate"]) for r in rows] == [
        ("standard", "symmetric", "0.5"),
        ("standard", "pair", "0.3"),
        ("oracle", "symmetric", "0.5"),
        ("oracle", "pair", "0.3"),
    ]
    for kind, rate in [("symmetric", 0.5), ("pair", 0.3)]:
        # the reference: the noisy training set the method runs saw, and its clean rows
        cfg = noisyfit.config.TrainConfig(**config, noise=kind, noise_rate=rate)
        data = prepare_data(cfg)
        clean = data.noisy.labels == data.true
        run = tmp_path / "b" / "runs" / f"oracle-{kind}{rate:g}-s0"
        trained = np.load(run / "noisy_labels.npy")  # the oracle run's training labels
        assert len(trained) == int(clean.sum()) < len(clean)
        assert np.array_equal(trained, data.true[clean])
        saved = np.load(
            tmp_path / "b" / "runs" / f"standard-{kind}{rate:g}-s0" / "noisy_labels.npy"
        )
        assert np.array_equal(saved, data.noisy.labels)
    md = (tmp_path / "b" / "summary.md").read_text()
    assert "| oracle | symmetric 0.5 | 1 |" in md and "× standard" in md


def test_oracle_is_not_a_method_name(tmp_path):
    import yaml

    from noisyfit import bench

    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"methods": ["standard", "oracle"]}))
    with pytest.raises(Exception, match="oracle: true"):
        bench.load_sweep(sweep)
