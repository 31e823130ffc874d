"""IEG, L2R, their meta-gradients, strong augmentation, EMA, the cosine-restart schedule, the
``noisyfit ieg`` command and WebVision-mini (on a fake tree in the real layout)."""

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noisyfit.config import TrainConfig
from noisyfit.data.augment import StrongAugment, cutout
from noisyfit.data.loader import Batch, DeviceLoader
from noisyfit.engine.schedule import cosine_decay_restarts, learning_rate
from noisyfit.methods import (
    Context,
    _builtin,  # noqa: F401
    build_method,
)
from noisyfit.methods.ema import ModelEMA
from noisyfit.methods.ieg import guess_labels, ieg_meta_step, logit_norm, mixup
from noisyfit.methods.l2r import ProbeStream
from noisyfit.models import build_model

# ---------------------------------------------------------------------------- schedule


def test_cosine_restarts_is_tf_cosine_decay_restarts():
    f = lambda s: cosine_decay_restarts(1.0, s, 10, t_mul=1.5, m_mul=0.9)  # noqa: E731
    assert f(0) == pytest.approx(1.0)
    assert f(5) == pytest.approx(0.5)
    assert f(10) == pytest.approx(0.9)  # restart, ×m_mul
    assert f(10 + 7.5) == pytest.approx(0.45)  # half of the 15-step second cycle
    assert f(25) == pytest.approx(0.81)  # third cycle starts at 10 + 15
    assert cosine_decay_restarts(1.0, 13, 10, t_mul=1.0) == pytest.approx(f(3))
    assert cosine_decay_restarts(2.0, 5, 10, alpha=0.5) == pytest.approx(2.0 * (0.5 * 0.5 + 0.5))
    # through the engine's entry point: global step = epoch·steps_per_epoch + step
    lr = learning_rate("cosine-restarts", 0.1, 2, 3, 100, 9, first_decay_steps=500)
    assert lr == pytest.approx(0.1 * cosine_decay_restarts(1.0, 203, 500, t_mul=1.5, m_mul=0.9))
    assert (
        TrainConfig(lr_schedule="cosine-restarts").replace(epochs=1).lr_schedule
        == "cosine-restarts"
    )


# ---------------------------------------------------------------------------- EMA


def test_ema_follows_tf_semantics_and_round_trips():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(net, 0.999)
    w0 = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.fill_(3.0)
    ema.update(net)
    d = min(0.999, 2 / 11)  # first update: (1 + n)/(10 + n), n = 1
    assert torch.allclose(ema.module[0].weight, d * w0 + (1 - d) * (w0 + 1))
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 3.0))  # buffers copied
    assert ema.num_updates == 1
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    state = ema.state_dict()
    other = ModelEMA(net, 0.999)
    other.load_state_dict(state)
    assert other.num_updates == 1 and torch.equal(other.module[0].weight, ema.module[0].weight)
    assert ModelEMA(net, 0.5, warmup=False).current_decay() == 0.5


def test_supervised_is_standard_with_an_ema_updated_after_each_step():
    ctx = _ctx()
    m = build_method("standard", ctx, {"ema_decay": 0.999})
    assert build_method("standard", ctx).ema is None  # off by default: standard unchanged
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    b = _batch()
    before = [p.detach().clone() for p in m.models["net"].parameters()]
    out = m.training_step(b, 0)
    out.loss.backward()
    opt.step()
    assert m.ema.num_updates == 0  # the step itself does not touch the EMA
    m.after_step()  # the engine's hook after opt.step()
    assert m.ema.num_updates == 1
    d = min(0.999, 2 / 11)  # TF's warm-up decay at the first update
    for e, p, p0 in zip(m.ema.module.parameters(), m.models["net"].parameters(), before):
        torch.testing.assert_close(e, d * p0 + (1 - d) * p.detach())
    logits = m.eval_logits(b.x)
    assert list(logits) == ["ema", "net"]
    fresh = build_method("standard", ctx, {"ema_decay": 0.999})
    fresh.load_state_dict(m.state_dict())
    assert fresh.ema.num_updates == 1
    torch.testing.assert_close(fresh.eval_logits(b.x)["ema"], logits["ema"])


# ---------------------------------------------------------------------------- L2R


def _ctx(k=4, shape=(1, 8, 8), model="cnn-tiny", probe=None, loader=None, n=40):
    return Context(
        num_classes=k,
        num_samples=n,
        input_shape=shape,
        epochs=1,
        batch_size=8,
        device=torch.device("cpu"),
        make_model=lambda: build_model(model, k, shape),
        probe=probe,
        loader=loader,
    )


def _batch(b=8, k=4, shape=(1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(
        torch.arange(b),
        torch.randn((b,) + shape, generator=g),
        torch.randint(0, k, (b,), generator=g),
    )


def _flat_grad(loss, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_l2r_weights_equal_brute_force_inner_products(wd):
    """w_i ∝ max(α⟨∇θ'[L_p + ½λ‖θ'‖²], ∇θ ℓ_i(θ)⟩, 0) with θ' = θ − αλθ (ε = 0), BN-free mlp."""
    torch.manual_seed(0)
    k, shape = 3, (6,)
    px, py = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    probe = DeviceLoader(px.numpy(), py.numpy(), batch_size=5, shuffle=False)
    m = build_method("l2r", _ctx(k, shape, "mlp", probe=probe), {"ema_decay": 0})
    net = m.models["net"]
    m.optimizer = torch.optim.SGD(net.parameters(), lr=0.1, weight_decay=wd)
    b = Batch(torch.arange(7), torch.randn(7, 6), torch.tensor([0, 1, 2, 0, 1, 2, 0]))
    out = m.training_step(b, 0)

    params = list(net.parameters())
    alpha = m.config.meta_stepsize
    theta_p = [(p - alpha * wd * p).detach().requires_grad_(True) for p in params]
    names = [n for n, _ in net.named_parameters()]
    logits_p = torch.func.functional_call(net, dict(zip(names, theta_p)), (px,))
    meta = F.cross_entropy(logits_p, py) + sum(0.5 * wd * t.pow(2).sum() for t in theta_p)
    g_probe = _flat_grad(meta, theta_p)
    per_example = torch.stack(
        [
            _flat_grad(F.cross_entropy(net(b.x[i : i + 1]), b.labels[i : i + 1]), params)
            for i in range(len(b))
        ]
    )
    u = alpha * per_example @ g_probe
    w = u.clamp_min(0) / (u.clamp_min(0).sum() + 1e-5)
    assert torch.allclose(out.score, u, rtol=1e-4, atol=1e-7)
    assert torch.allclose(out.weights, w, rtol=1e-4, atol=1e-6)
    assert torch.equal(out.selected, w > 0)
    ce = F.cross_entropy(net(b.x), b.labels, reduction="none")
    assert torch.allclose(out.loss, (w * ce).sum(), rtol=1e-5)


def test_l2r_on_batchnorm_model_leaves_running_stats_to_the_training_forward():
    probe = DeviceLoader(
        np.random.randint(0, 256, (6, 1, 8, 8), dtype=np.uint8), np.arange(6) % 4, batch_size=6
    )
    m = build_method("l2r", _ctx(probe=probe))
    net = m.models["net"]
    ref = build_model("cnn-tiny", 4, (1, 8, 8))
    ref.load_state_dict(net.state_dict())
    b = _batch()
    out = m.training_step(b, 0)
    ref.train()
    ref(b.x)  # the one training forward a plain step would run
    for (n, x), y in zip(net.named_buffers(), ref.buffers()):
        assert torch.allclose(x.float(), y.float()), n
    assert out.weights.shape == (8,) and torch.isfinite(out.weights).all()
    assert out.weights.min() >= 0 and float(out.weights.sum()) <= 1 + 1e-6
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_probe_stream_cycles_and_resumes():
    dl = DeviceLoader(np.zeros((5, 1, 2, 2), np.uint8), np.arange(5), batch_size=2, seed=3)
    s = ProbeStream(dl)
    seq = [s.next().index.tolist() for _ in range(7)]
    assert sorted(sum(seq[:3], [])) == list(range(5))  # one epoch = 3 batches
    r = ProbeStream(dl)
    r.step = 4
    assert [r.next().index.tolist() for _ in range(3)] == seq[4:]


# ---------------------------------------------------------------------------- IEG


def test_logit_norm_guessing_and_mixup():
    z = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    assert float(logit_norm(z).pow(2).mean()) == pytest.approx(1.0, rel=1e-6)
    g = guess_labels([z, z], temperature=0.5)
    p = logit_norm(z).softmax(1).pow(2)
    assert torch.allclose(g, p / p.sum(1, keepdim=True))
    assert torch.allclose(g.sum(1), torch.ones(2))
    torch.manual_seed(0)
    x, y = torch.randn(6, 3), torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    xm, ym, mu, perm = mixup(x, y, 0.5)
    assert (mu >= 0.5).all() and (mu <= 1).all()
    assert torch.allclose(xm, mu[:, None] * x + (1 - mu[:, None]) * x[perm])
    assert torch.allclose(ym.sum(1), torch.ones(6))


def test_ieg_meta_step_equals_brute_force_weight_and_label_rules():
    torch.manual_seed(1)
    k, b = 3, 6
    net = build_model("mlp", k, (5,))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    F.cross_entropy(net(torch.randn(4, 5)), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()  # momentum buffers now exist
    x, labels = torch.randn(b, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    px, py = torch.randn(4, 5), torch.tensor([2, 1, 0, 2])
    onehot = F.one_hot(labels, k).float()
    guess = torch.softmax(torch.randn(b, k), 1)
    logits = net(x)
    w, lam, g_om, g_lam = ieg_meta_step(
        net,
        logits,
        onehot,
        guess,
        px,
        py,
        lam0=0.9,
        step_size=0.1,
        momentum=0.9,
        optimizer=opt,
        weight_decay=False,
    )
    params = list(net.parameters())
    bufs = [opt.state[p]["momentum_buffer"] for p in params]
    t0 = 0.9 * onehot + 0.1 * guess

    def ce_i(i, target):
        return -(target[i] * net(x[i : i + 1])[0].log_softmax(0)).sum()

    full = sum(ce_i(i, t0) for i in range(b)) / b
    grads = torch.autograd.grad(full, params)
    theta_p = [
        (p - 0.1 * (0.9 * m + g)).detach().requires_grad_(True)
        for p, m, g in zip(params, bufs, grads)
    ]
    names = [n for n, _ in net.named_parameters()]
    meta = F.cross_entropy(torch.func.functional_call(net, dict(zip(names, theta_p)), (px,)), py)
    gp = _flat_grad(meta, theta_p)
    a = torch.stack([_flat_grad(ce_i(i, t0), params) for i in range(b)])
    diff = onehot - guess  # ∂P(λ)/∂λ
    c = torch.stack(
        [
            _flat_grad(-(diff[i] * net(x[i : i + 1])[0].log_softmax(0)).sum(), params)
            for i in range(b)
        ]
    )
    d_omega = -0.1 * a @ gp
    d_lam = -0.1 * (1.0 / b) * c @ gp
    assert torch.allclose(g_om, d_omega, rtol=1e-4, atol=1e-7)
    assert torch.allclose(g_lam, d_lam, rtol=1e-4, atol=1e-8)
    assert torch.allclose(
        w, (-d_omega).clamp_min(0) / ((-d_omega).clamp_min(0).sum() + 1e-5), rtol=1e-4, atol=1e-6
    )
    assert torch.equal(lam, (d_lam < 0).float())


def _ieg(options=None, k=4):
    x = np.random.default_rng(0).integers(0, 256, (16, 1, 8, 8), dtype=np.uint8)
    loader = DeviceLoader(x, np.arange(16) % k, batch_size=8, seed=0)
    probe = DeviceLoader(x[:8], np.arange(8) % k, batch_size=8)
    ctx = _ctx(k, probe=probe, loader=loader, n=16)
    return build_method("ieg", ctx, options), loader


@pytest.mark.parametrize(
    "options",
    [{}, {"aug_type": "randaug", "threshold": 1.0, "rampup_steps": 10, "detach_guess": False}],
)
def test_ieg_step_reports_weights_labels_and_selection(options):
    torch.manual_seed(0)
    m, loader = _ieg(options)
    m.optimizer = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    for b in loader.epoch(0):
        out = m.training_step(b, 0)
        m.optimizer.zero_grad()
        out.loss.backward()
        m.optimizer.step()
        m.after_step()  # as the engine does: the EMA update
        assert torch.isfinite(out.loss)
        assert out.weights.min() >= 0 and float(out.weights.sum()) <= 1 + 1e-6
        assert torch.equal(out.selected, out.weights > 0)
        assert out.new_labels.shape == (8,) and out.new_labels.dtype == torch.int64
    m.on_epoch_end(0)
    assert m.ema.num_updates == 2 and m.steps == 2
    assert list(m.eval_logits(b.x)) == ["ema", "net"]
    state = m.state_dict()
    m2, _ = _ieg(options)
    m2.load_state_dict(state)
    assert m2.probe.step == 2 and m2.steps == 2


# ---------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("kind", ["autoaug", "randaug", "default"])
def test_strong_view_shapes_and_normalization(kind):
    torch.manual_seed(0)
    x = np.random.default_rng(0).integers(0, 256, (6, 3, 16, 16), dtype=np.uint8)
    dl = DeviceLoader(
        x, np.zeros(6), batch_size=6, mean=(0.5,) * 3, std=(0.25,) * 3, augment=True, shuffle=False
    )
    b = next(iter(dl))
    v = StrongAugment(kind)(dl, b)
    assert v.shape == b.x.shape and v.dtype == torch.float32
    assert v.min() >= -2.0 - 1e-6 and v.max() <= 2.0 + 1e-6  # (x/255 − 0.5)/0.25
    fallback = StrongAugment(kind)(None, b)  # no raw images: flip/crop/cutout of batch.x
    assert fallback.shape == b.x.shape


def test_cutout_zeroes_one_clipped_square_per_image():
    torch.manual_seed(0)
    out = cutout(torch.ones(20, 1, 8, 8), 4)
    zeros = (out == 0).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros <= 16).all()


# ---------------------------------------------------------------------------- noisyfit ieg


def test_parse_dataset_names_of_the_seed():
    from noisyfit.commands.ieg_cli import parse_dataset

    assert parse_dataset("cifar100_uniform_0.8") == ("cifar100", "uniform", 0.8)
    assert parse_dataset("cifar10_asymmetric_0.4") == ("cifar10", "asymmetric", 0.4)
    assert parse_dataset("fashion-mnist_pair_0.4") == ("fashion-mnist", "pair", 0.4)
    assert parse_dataset("webvisionmini") == ("webvisionmini", "none", 10.0)
    assert parse_dataset("webvisionmini_5") == ("webvisionmini", "none", 5.0)
    for bad in ("cifar10", "cifar10_uniform_x", "cifar10_uniform_1.5", "webvisionmini_a"):
        with pytest.raises(ValueError):
            parse_dataset(bad)


SYN = [
    "--dataset",
    "synthetic_uniform_0.4",
    "--network-name",
    "cnn-tiny",
    "--batch-size",
    "64",
    "--probe-dataset-hold-ratio",
    "0.05",
    "--no-progress",
]


@pytest.mark.parametrize("method", ["ieg", "l2r", "supervised"])
def test_ieg_command_trains_and_evaluation_restores_exactly(tmp_path, method, capsys):
    from noisyfit.cli import main
    from noisyfit.commands.ieg_cli import IEGArgs, evaluation, run_dir_of

    args = SYN + ["--method", method, "--checkpoint-path", str(tmp_path), "--aug-type", "randaug"]
    assert main(["ieg", *args, "--max-iteration", "16"]) == 0
    a = IEGArgs(
        dataset="synthetic_uniform_0.4",
        network_name="cnn-tiny",
        probe_dataset_hold_ratio=0.05,
        checkpoint_path=tmp_path,
        progress=False,
    )
    run = run_dir_of(a)
    assert run == tmp_path / "synthetic_uniform_0.4_p0.05" / "cnn-tiny"
    summary = json.loads((run / "summary.json").read_text())
    probe = json.loads((run / "probe.json").read_text())
    assert summary["epochs"] == 2  # 16 steps / 8 steps per epoch; the one summary schema
    assert summary["ieg"] == {
        "method": method, "dataset": "synthetic_uniform_0.4", "network_name": "cnn-tiny"
    }  # fmt: skip
    assert probe["size"] == 24 and probe["used_by_method"] == (method != "supervised")
    assert len(np.load(run / "noisy_labels.npy")) == 512 - 24  # probe held out before noise
    res = evaluation(a)
    assert list(res)[0] == "ema"
    assert res["ema"]["acc"] == summary["last_test_acc"]
    assert res["ema"]["loss"] == summary["last_test_loss"]
    assert main(["ieg", *args, "--mode", "evaluation"]) == 0
    assert "top-5" in capsys.readouterr().out


def test_decay_steps_sets_the_first_cosine_cycle(tmp_path):
    from noisyfit.cli import main

    args = SYN + ["--method", "supervised", "--checkpoint-path", str(tmp_path)]
    assert main(["ieg", *args, "--max-iteration", "16", "--decay-steps", "3"]) == 0
    run = tmp_path / "synthetic_uniform_0.4_p0.05" / "cnn-tiny"
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    # the lr logged per epoch is its last step's: global steps 7 and 15, 8 steps per epoch
    want = [0.1 * cosine_decay_restarts(1.0, g, 3, t_mul=1.5, m_mul=0.9) for g in (7, 15)]
    assert lrs == pytest.approx(want)
    assert want != pytest.approx(
        [0.1 * cosine_decay_restarts(1.0, g, 500, t_mul=1.5, m_mul=0.9) for g in (7, 15)]
    )


def test_ieg_command_errors():
    from noisyfit.cli import main

    assert main(["ieg", "--dataset", "cifar10", "--no-progress"]) == 2
    assert main(["ieg", *SYN, "--mode", "evaluation", "--checkpoint-path", "/nonexistent"]) == 2


# ---------------------------------------------------------------------------- WebVision-mini


def _jpeg(path, color, size=12):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size + 3), color).save(path)


@pytest.fixture(scope="module")
def webvision_tree(tmp_path_factory):
    """A fake WebVision 1.0 + ImageNet tree in the real layout: 52 synsets, images of classes
    0, 1 (and 50, 51 that mini-WebVision must drop)."""
    root = tmp_path_factory.mktemp("webvision")
    wnids = [f"n{i:08d}" for i in range(52)]
    (root / "info").mkdir()
    (root / "info" / "synsets.txt").write_text(
        "".join(f"{w} class {i}\n" for i, w in enumerate(wnids))
    )
    google, flickr, val = [], [], []
    for y in (0, 1, 50, 51):
        for j in range(3):
            rel = f"google/q{y + 1:04d}/{j:06d}.jpg"
            _jpeg(root / rel, (40 * j, 5 * y, 100))
            google.append(f"{rel} {y}\n")
        rel = f"flickr/q{y + 1:04d}/000000.jpg"
        _jpeg(root / rel, (0, 0, 0))
        flickr.append(f"{rel} {y}\n")
        _jpeg(root / "val_images_256" / f"val{y:06d}.jpg", (y, y, y))
        val.append(f"val{y:06d}.jpg {y}\n")
    (root / "info" / "train_filelist_google.txt").write_text("".join(google))
    (root / "info" / "train_filelist_flickr.txt").write_text("".join(flickr))
    (root / "info" / "val_filelist.txt").write_text("".join(val))
    for y, w in enumerate(wnids[:50]):
        _jpeg(root / "imagenet" / "val" / w / f"ILSVRC2012_val_{y:08d}.JPEG", (y, 0, 0))
        for j in range(2):
            _jpeg(root / "imagenet" / "train" / w / f"{w}_{j}.JPEG", (0, y, j))
    return root


def test_webvision_lists_take_the_first_50_classes(webvision_tree):
    from noisyfit.data import webvision as wv

    root = wv.find_root(webvision_tree)
    train, val = wv.webvision_lists(root)
    assert len(train) == 6 and set(train.labels.tolist()) == {0, 1}
    assert len(train.class_names) == 50 and train.class_names[0] == "n00000000"
    assert all(p.is_file() for p in train.paths) and all(p.is_file() for p in val.paths)
    both, _ = wv.webvision_lists(root, sources=("google", "flickr"))
    assert len(both) == 8
    inval = wv.imagenet_val(root, train.class_names)
    assert len(inval) == 50 and inval.labels.tolist() == list(range(50))
    probe = wv.imagenet_probe(root, train.class_names, 1, seed=0)
    assert np.bincount(probe.labels).tolist() == [1] * 50
    with pytest.raises(FileNotFoundError):
        wv.find_root(webvision_tree / "nowhere")


def test_folder_loader_feeds_the_engine_interface(webvision_tree):
    from noisyfit.data import webvision as wv

    train, _ = wv.webvision_lists(wv.find_root(webvision_tree))
    dl = wv.FolderLoader(train, batch_size=4, train=True, strong=True, workers=0, seed=1)
    assert len(dl) == 2 and dl.labels.tolist() == train.labels.tolist()
    batches = list(dl.epoch(0))
    assert sorted(torch.cat([b.index for b in batches]).tolist()) == list(range(6))
    b = batches[-1]
    assert b.x.shape == (2, 3, 224, 224) and b.x.dtype == torch.float32
    assert torch.equal(b.labels, dl.labels[b.index])
    it = dl.epoch(1)
    b = next(it)
    s = dl.strong_view(b)
    assert s.shape == b.x.shape and (s == 0).any()  # Cutout
    assert [x.index.tolist() for x in dl.epoch(3)] == [x.index.tolist() for x in dl.epoch(3)]
    ev = wv.FolderLoader(train, batch_size=4, train=False, crop=32, resize=40, workers=0)
    assert next(iter(ev)).x.shape == (4, 3, 32, 32)
    assert torch.equal(next(iter(ev)).index, torch.arange(4))


def test_webvision_mini_in_memory_dataset_and_ieg_command(webvision_tree, tmp_path):
    from noisyfit.commands.ieg_cli import IEGArgs, evaluation, train
    from noisyfit.data.base import load_dataset

    ds = load_dataset("webvision-mini", webvision_tree, image_size=16, workers=0)
    assert ds.x.shape == (6, 3, 16, 16) and ds.num_classes == 50 and not ds.labels_are_true
    a = IEGArgs(
        dataset="webvisionmini_1",
        network_name="cnn-tiny",
        method="ieg",
        max_iteration=2,
        batch_size=4,
        val_batch_size=25,
        data_dir=str(webvision_tree),
        use_imagenet_as_eval=True,
        checkpoint_path=tmp_path,
        workers=0,
        progress=False,
        aug_type="default",
    )
    last = train(a)
    assert last["epoch"] == 1 and 0 <= last["test_acc"] <= 1 and "label_precision" not in last
    res = evaluation(a)
    assert res["ema"]["acc"] == last["test_acc"]


def test_ieg_command_builds_its_run_as_noisyfit_train(tmp_path):
    """One run builder and one run-folder writer: ``noisyfit ieg`` (supervised, no EMA) trains
    exactly what ``noisyfit.train`` trains from the translated config, and its summary.json
    has train's schema plus the optional ``ieg`` key."""
    import noisyfit
    from noisyfit.commands.ieg_cli import IEGArgs, run_dir_of, train, train_config

    a = IEGArgs(
        dataset="synthetic_uniform_0.4", network_name="cnn-tiny", method="supervised",
        use_ema=False, batch_size=64, probe_dataset_hold_ratio=0.05, max_iteration=16,
        checkpoint_path=tmp_path / "ieg", progress=False, device="cpu",
    )  # fmt: skip
    train(a)
    ieg = json.loads((run_dir_of(a) / "summary.json").read_text())
    cfg = train_config(a).replace(epochs=2, out=str(tmp_path / "train"), name="r")
    r = noisyfit.train(cfg, report=False)
    hist = [json.loads(x) for x in (run_dir_of(a) / "metrics.jsonl").read_text().splitlines()]
    assert [h["train_loss"] for h in hist] == [h["train_loss"] for h in r.history]
    assert ieg["last_test_acc"] == r.summary["last_test_acc"] is not None
    assert set(ieg) == set(r.summary) | {"ieg"}
    assert ieg["ieg"]["method"] == "supervised" and ieg["method"] == "standard"


def test_ieg_benchmark_scripts_run_and_report_selected_last_oracle(
    tmp_path, fashion_idx, benchmark_script
):
    """benchmarks/ieg_family.py and ieg_ablation.py end to end on a tiny idx folder: every
    requested row is in the table, with selected / last / oracle accuracies in [0, 100]."""
    ieg_ablation, ieg_family = map(benchmark_script, ("ieg_ablation", "ieg_family"))

    data = fashion_idx(tmp_path / "fmnist")
    small = ["--data-dir", str(data), "--epochs", "1", "--train-subset", "300", "--rampup", "2"]
    out = tmp_path / "ablation.md"
    ieg_ablation.main([*small, "--seeds", "0", "1", "--jobs", "1", "--variants", "0", "6",
                       "--out", str(out)])  # fmt: skip
    rows = [r for r in out.read_text().splitlines() if r.startswith("| ") and "---" not in r]
    names = [r.split(" | ")[0][2:] for r in rows[1:]]
    assert names == ["standard", "ieg, k 0 (no consistency term)"]
    for r in rows[1:]:
        accs = re.findall(r"(\d+\.\d\d) ± (\d+\.\d\d)", r)
        assert len(accs) == 3 and all(0 <= float(m) <= 100 for m, _ in accs)
    assert "190 noisy training images" in out.read_text()  # 300 - 100 probe - 5 % val

    out = tmp_path / "family.md"
    ieg_family.main([*small, "--seeds", "1", "--methods", "standard", "ieg-nokl",
                     "--noises", "pair:0.4", "--out", str(out)])  # fmt: skip
    text = out.read_text()
    for title in ("selected", "last", "oracle"):
        table = text.split(f"**{title}**")[1].split("**")[0]
        assert re.search(r"\| standard \| \d+\.\d\d", table)
        assert re.search(r"\| ieg-nokl \| \d+\.\d\d", table)
