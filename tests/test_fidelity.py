"""Fidelity: each rule changed to follow the official code, compared on random inputs with an
independent re-implementation of the official step, written from the official code (NumPy /
plain torch, the official names, none of noisyfit's helpers)."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noisyfit.data.loader import DeviceLoader
from noisyfit.methods import Context, _builtin, build_method  # noqa: F401
from noisyfit.models import build_model

# --------------------------------------------------------------------------------------------
# INCV stage 2 (chenpf1025/noisy_label_understanding_utilizing, INCV_main.py "Main training")


def _incv_ctx(n=300, k=4, b=16, epochs=10):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)
    y = rng.integers(0, k, size=n)
    loader = DeviceLoader(x, y, batch_size=b, seed=1)
    return Context(
        num_classes=k,
        num_samples=n,
        input_shape=(1, 8, 8),
        epochs=epochs,
        batch_size=b,
        device=torch.device("cpu"),
        noise_rate=0.4,
        make_model=lambda: build_model("cnn-tiny", k, (1, 8, 8)),
        loader=loader,
    )


def _official_incv_step(model1, model2, x_batch, y_batch, n_s, e, noise_ratio_selected, tk, k=4):
    """INCV_main.py's step: n_keep from len(x_S); model.predict ranks the joined batch by
    cross-entropy Σ −y·log(ŷ + 1e-8); train_on_batch on the partner's n_keep smallest.
    Returns the two Keras losses (each the mean cross-entropy over its picks) and the picks."""
    n_keep = round(n_s * (1 - noise_ratio_selected * min(1, e / tk)))
    y1h = np.eye(k)[y_batch.numpy()]
    picks = []
    for model in (model1, model2):
        model.eval()
        with torch.no_grad():
            y_pred = model(x_batch).softmax(1).numpy()
        model.train()
        cross_entropy = np.sum(-y1h * np.log(y_pred + 1e-8), axis=1)
        picks.append(np.argsort(cross_entropy, kind="stable")[:n_keep])
    idx1, idx2 = picks
    loss1 = F.cross_entropy(model1(x_batch[idx2]), y_batch[idx2])  # train_on_batch: mean
    loss2 = F.cross_entropy(model2(x_batch[idx1]), y_batch[idx1])
    return loss1, loss2, idx1, idx2


@pytest.mark.parametrize("epoch", [3, 7])  # 3: S-batch only (e ≤ e_warm); 7: S + C
def test_incv_stage2_step_matches_the_official_step(epoch):
    torch.manual_seed(0)
    ctx = _incv_ctx()
    m = build_method("incv", ctx, {"eps": "0.4", "e_warm": "5", "t_k": "10"})
    g = torch.Generator().manual_seed(2)
    m.select.copy_(torch.rand(ctx.num_samples, generator=g) < 0.6)
    m.candidate.copy_(~m.select & (torch.rand(ctx.num_samples, generator=g) < 0.5))
    m._derive()
    n_s, n_c = m.sizes
    assert m.c_batch == min(int(n_c * 16 / n_s), int(0.5 * 16))  # batch_size_val
    ref1, ref2 = copy.deepcopy(m.models["net1"]), copy.deepcopy(m.models["net2"])
    batch = next(iter(m.epoch_loader(ctx.loader).epoch(0)))
    assert len(batch) == 16 and bool(m.select[batch.index].all())  # a full S-batch
    m.train()
    out = m.training_step(batch, epoch)
    if epoch > 5:  # the C-batch was appended: c_batch candidates after the 16 S samples
        assert len(batch) == 16 + m.c_batch and bool(m.candidate[batch.index[16:]].all())
    else:
        assert len(batch) == 16
    l1, l2, idx1, idx2 = _official_incv_step(
        ref1, ref2, batch.x, batch.labels, 16, epoch, m.eps_s, 10
    )
    assert sorted(torch.nonzero(out.selected).flatten().tolist()) == sorted(idx2.tolist())
    assert out.loss.item() == pytest.approx((l1 + l2).item(), rel=1e-5)
    # the gradients of network 1 are those of train_on_batch on network 2's picks
    out.loss.backward()
    l1.backward()
    for p, q in zip(m.models["net1"].parameters(), ref1.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)
    # BatchNorm statistics come from the picks only (the ranking pass is inference mode)
    for a, b in zip(m.models["net1"].buffers(), ref1.buffers()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_incv_epoch_is_s_over_b_steps_of_s_samples():
    ctx = _incv_ctx()
    m = build_method("incv", ctx, {"eps": "0.4"})
    m.select.copy_(torch.arange(ctx.num_samples) % 3 != 0)
    m._derive()
    loader = m.epoch_loader(ctx.loader)
    seen = torch.cat([b.index for b in loader.epoch(0)])
    n_s = int(m.select.sum())
    assert len(loader) == math.ceil(n_s / 16)  # INCV_main.py: batches ≥ train_size/batch_size
    assert sorted(seen.tolist()) == torch.nonzero(m.select).flatten().tolist()
    old = build_method("incv", ctx, {"eps": "0.4", "batches": "all"})
    assert len(old.epoch_loader(ctx.loader)) == math.ceil(ctx.num_samples / 16)


def test_incv_c_batches_cycle_over_the_candidates():
    """The C-batch cycles: after |C|/c_batch steps it starts a fresh permutation of C."""
    ctx = _incv_ctx()
    m = build_method("incv", ctx, {"eps": "0.4", "e_warm": "0"})
    m.select.copy_(torch.arange(ctx.num_samples) < 200)
    m.candidate.copy_(torch.arange(ctx.num_samples) >= 250)
    m._derive()
    assert m.c_batch == min(int(50 * 16 / 200), 8) == 4
    got = []
    for _ in range(13):  # 50 candidates in batches of 4: 13 batches per pass (last of 2)
        got.append(m._next_c_batch().index)
    first = torch.cat(got)
    assert sorted(first.tolist()) == list(range(250, 300))
    assert bool(m.candidate[m._next_c_batch().index].all())  # the next pass


# --------------------------------------------------------------------------------------------
# Co-teaching's official Adam plan (bhanML/Co-teaching main.py: alpha_plan, beta1_plan)


def _official_plans(learning_rate, n_epoch, epoch_decay_start):
    mom1, mom2 = 0.9, 0.1
    alpha_plan = [learning_rate] * n_epoch
    beta1_plan = [mom1] * n_epoch
    for i in range(epoch_decay_start, n_epoch):
        alpha_plan[i] = float(n_epoch - i) / (n_epoch - epoch_decay_start) * learning_rate
        beta1_plan[i] = mom2
    return alpha_plan, beta1_plan


@pytest.mark.parametrize("n_epoch,start", [(200, 80), (12, 5), (6, 1)])
def test_coteaching_linear_decay_matches_the_official_plan(n_epoch, start):
    from noisyfit.engine.schedule import adam_beta1, learning_rate

    alpha_plan, beta1_plan = _official_plans(1e-3, n_epoch, start)
    epochs = n_epoch - 1  # the official loop trains plan indices 1 … n_epoch − 1
    for e in range(epochs):
        lr = learning_rate("linear-decay", 1e-3, e, 0, 10, epochs, decay_start=start)
        assert lr == pytest.approx(alpha_plan[e + 1], rel=1e-12, abs=1e-15)
        assert adam_beta1("linear-decay", e, start, 0.9, 0.1) == beta1_plan[e + 1]
    assert adam_beta1("step", epochs - 1, start, 0.9, 0.1) == 0.9  # other schedules: β1 kept


def test_fit_sets_the_adam_betas_of_the_linear_decay_plan(tmp_path):
    import noisyfit

    seen = []
    from noisyfit.methods import METHODS

    cls = METHODS.get("standard")
    original = cls.on_epoch_end

    def spy(self, epoch):
        g = self.optimizer.param_groups[0]
        seen.append((g["lr"], g["betas"][0]))
        return original(self, epoch)

    cls.on_epoch_end = spy
    try:
        noisyfit.train(
            dataset="synthetic",
            model="mlp",
            progress=False,
            epochs=4,
            optimizer="adam",
            lr=1e-3,
            lr_schedule="linear-decay",
            lr_decay_start=3,
            out=str(tmp_path),
            name="a",
        )
    finally:
        cls.on_epoch_end = original
    alpha_plan, beta1_plan = _official_plans(1e-3, 5, 3)
    assert [b for _, b in seen] == beta1_plan[1:5]
    assert [lr for lr, _ in seen] == pytest.approx(alpha_plan[1:5])


# --------------------------------------------------------------------------------------------
# MentorNet's weight decay (google/mentornet cifar_train_mentornet.py:217-228)


def test_mentornet_step_matches_the_official_decay_scaled_by_v():
    from noisyfit.config import TrainConfig

    wd, lr = 0.01, 0.1
    ctx = Context(
        num_classes=4,
        num_samples=64,
        input_shape=(1, 8, 8),
        epochs=10,
        batch_size=32,
        device=torch.device("cpu"),
        make_model=lambda: build_model("cnn-tiny", 4, (1, 8, 8)),
        config=TrainConfig(dataset="synthetic", weight_decay=wd),
    )
    torch.manual_seed(0)
    m = build_method("mentornet", ctx, {"mentor_steps": "50"})
    m.optimizer = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.0, weight_decay=wd)
    ref = copy.deepcopy(m.models["net"])
    from noisyfit.data.loader import Batch

    g = torch.Generator().manual_seed(1)
    batch = Batch(torch.arange(32), torch.randn(32, 1, 8, 8, generator=g), torch.arange(32) % 4)
    m.train()
    out = m.training_step(batch, 5)  # percent-epoch 50: self-paced, dropout 0.05
    v = out.weights.detach()
    m.optimizer.zero_grad()
    out.loss.backward()
    m.optimizer.step()
    # the official step: loss·v averaged + decay_loss·Σv/b, decay_loss = wd·Σ tf.nn.l2_loss(w)
    loss = F.cross_entropy(ref(batch.x), batch.labels, reduction="none")
    decay_loss = wd * sum((w**2).sum() / 2 for w in ref.parameters())
    total = torch.mean(loss * v) + decay_loss * (v.sum() / 32)
    grads = torch.autograd.grad(total, list(ref.parameters()))
    with torch.no_grad():
        for p, q, gr in zip(m.models["net"].parameters(), ref.parameters(), grads):
            assert torch.allclose(p, q - lr * gr, atol=1e-6)
    assert 0 < float(v.sum()) < 32  # the scaling is not the plain decay (Σv/b = 1)


# --------------------------------------------------------------------------------------------
# IEG (google-research ieg/models/model.py set_input; dataset_utils autoaug_batch_process_map_fn)


def _ieg_ctx(k=3, n_probe=9, b=4, augment=True):
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, size=(n_probe, 1, 8, 8), dtype=np.uint8)
    py = np.array([2, 0, 1, 0, 2, 1, 0, 1, 2])[:n_probe]  # 3 per class, not interleaved
    x = rng.integers(0, 256, size=(20, 1, 8, 8), dtype=np.uint8)
    y = rng.integers(0, k, size=20)
    kw = dict(mean=(120.0 / 255,), std=(0.3,), augment=augment, seed=3)
    return Context(
        num_classes=k,
        num_samples=20,
        input_shape=(1, 8, 8),
        epochs=1,
        batch_size=b,
        device=torch.device("cpu"),
        make_model=lambda: build_model("cnn-tiny", k, (1, 8, 8)),
        probe=DeviceLoader(px, py, batch_size=b, **kw),
        loader=DeviceLoader(x, y, batch_size=b, **kw),
    )


def test_ieg_probe_batches_are_the_official_unshuffled_interleaved_stream():
    ctx = _ieg_ctx()
    m = build_method("ieg", ctx, {"ema_decay": "0"})
    labels = ctx.probe.labels.numpy()
    # the official probe_dataflow: class-interleaved order, .repeat().batch(b) without shuffle
    per_class = [list(np.flatnonzero(labels == c)) for c in range(3)]
    order = [per_class[c][r] for r in range(3) for c in range(3)]
    stream = np.concatenate([order] * 10)
    for k in range(6):  # batches wrap around the end of the probe set
        got = m.probe.next()
        assert got.index.tolist() == stream[k * 4 : (k + 1) * 4].tolist()
        assert torch.equal(got.labels, ctx.probe.labels[got.index])
    assert [labels[i] for i in order[:3]] == [0, 1, 2]
    shuffled = build_method("ieg", ctx, {"ema_decay": "0", "probe_order": "shuffled"})
    assert type(shuffled.probe).__name__ == "ProbeStream"


def test_ieg_strong_view_starts_from_the_weak_views_crop_and_flip():
    from noisyfit.data.loader import epoch_generator, random_crop_flip

    ctx = _ieg_ctx()
    m = build_method("ieg", ctx, {"ema_decay": "0", "aug_type": "default"})
    batch = next(iter(ctx.loader.epoch(0)))
    # replay the loader's draws: the permutation, then this batch's crop and flip
    g = epoch_generator(ctx.loader.seed, 0)
    perm = torch.randperm(20, generator=g)
    assert torch.equal(perm[:4], batch.index)
    weak_raw = random_crop_flip(ctx.loader.x[batch.index], 4, True, g)
    seen = {}

    def spy(loader, b, raw=None):
        seen["raw"] = raw
        return b.x

    m.augment = spy
    m.strong_view(batch)
    assert seen["raw"] is not None and torch.equal(seen["raw"], weak_raw)
    raw_cfg = build_method("ieg", ctx, {"ema_decay": "0", "strong_from": "raw"})
    raw_cfg.augment = spy
    raw_cfg.strong_view(batch)
    assert seen["raw"] is None  # from loader.x[batch.index], the un-augmented image


def test_ieg_lets_the_gradient_flow_through_the_guessed_label_by_default():
    from noisyfit.methods import METHODS
    from noisyfit.methods.base import method_config

    assert method_config(METHODS.get("ieg")).detach_guess is False


# --------------------------------------------------------------------------------------------
# forward="two": the SELFIE repo's second forward pass on the selected samples


def _small_ctx(noise_rate=0.4):
    return Context(
        num_classes=4,
        num_samples=32,
        input_shape=(1, 8, 8),
        epochs=10,
        batch_size=16,
        device=torch.device("cpu"),
        noise_rate=noise_rate,
        make_model=lambda: build_model("cnn-tiny", 4, (1, 8, 8)),
    )


def test_coteaching_second_forward_pass_trains_on_a_pass_over_the_picks():
    from noisyfit.data.loader import Batch

    torch.manual_seed(0)
    m = build_method("coteaching", _small_ctx(), {"forward": "two", "t_k": "1"})
    ref1, ref2 = copy.deepcopy(m.models["net1"]), copy.deepcopy(m.models["net2"])
    g = torch.Generator().manual_seed(1)
    batch = Batch(torch.arange(16), torch.randn(16, 1, 8, 8, generator=g), torch.arange(16) % 4)
    m.train()
    out = m.training_step(batch, 3)
    # the port: rank by each network's CE of a first pass, keep ⌈(1 − τ)·b⌉, then each network
    # runs again on the partner's picks only (BatchNorm statistics of the picks)
    k = math.ceil(0.6 * 16 - 1e-9)
    with torch.no_grad():
        ce1 = F.cross_entropy(ref1(batch.x), batch.labels, reduction="none")
        ce2 = F.cross_entropy(ref2(batch.x), batch.labels, reduction="none")
    i1 = torch.argsort(ce1, stable=True)[:k]
    i2 = torch.argsort(ce2, stable=True)[:k]
    loss = F.cross_entropy(ref1(batch.x[i2]), batch.labels[i2]) + F.cross_entropy(
        ref2(batch.x[i1]), batch.labels[i1]
    )
    assert out.loss.item() == pytest.approx(loss.item(), rel=1e-5)
    assert sorted(torch.nonzero(out.selected).flatten().tolist()) == sorted(i2.tolist())
    for a, b in zip(m.models["net1"].buffers(), ref1.buffers()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)
