"""``mentornet``: MentorNet with a pre-defined curriculum, MentorNet-PD (Jiang, Zhou, Leung,
Li, Fei-Fei, ICML 2018), ``google/mentornet``.

A small *mentor* network g_m computes a weight v_i ∈ [0, 1] for every example of the
*student*'s batch; the student minimises (1/b)·Σ_i v_i·ℓ_i (v is not back-propagated).

**Mentor input** per example (``code/utils.py``): the loss ℓ_i, the loss difference ℓ_i − λ,
a label (always 0 in the code) and the training progress in percent (0–99). λ is an
exponential moving average, decay ``ema_decay`` (0.5, the student script's flag; 0.9 is the
function's default), of the ``p``-th percentile of the batch losses (p = 0.75 in the PD
commands for 20 %/40 % noise, 0.5 for 80 %).

**Mentor network** (``mentornet_nn``): a bidirectional LSTM with one unit per direction over a
one-step sequence of (ℓ, ℓ − λ) — its two final *cell* states are the features; from the zero
state that is c = σ(W_i·x + b_i)·tanh(W_g·x + b_g) per direction, computed as such —, a trainable
2-d label embedding, a fixed (not trained) random 5-d embedding of the percent-epoch, a
20-unit tanh layer and a linear output; v = sigmoid(output).

**Pre-defined curriculum** (``vstar_mentornet_pd``) the mentor is trained to imitate, on a grid
of ℓ ∈ {0, 0.1, …, 9.9} ∪ {10, …, 29}, ℓ − λ ∈ [−5, 5) in steps of 0.1, percent-epoch 0–99:
v* = 1 for epoch % ≤ 18; self-paced v* = 1[ℓ − λ ≤ 0] for 18 < epoch % < 90; SPCL-linear
v* = clip(1 − (ℓ − λ)/γ, 0, 1) (γ = 1) for epoch % ≥ 90. Trained by mean squared error with
Adam (the original: lr 0.1 × 0.9 every 1000 steps, batch 32, 30 000 steps, gradient norm
clipped at 5, 100 000 grid points, 80 % for training). The mentor is trained once per process
and setting (``mentor_steps``, ``mentor_seed``) in a forked RNG, so it does not disturb the
run's random stream and is rebuilt identically on resume.

**Student side**: burn-in (v = 1 while percent-epoch < ``burn_in_epoch`` − 1; 0 in the PD
commands), and *example dropout*: at each step only ⌊b·(1 − r)⌋ random examples keep their
weight, r from the percent-epoch schedule ``dropout_rates`` ("rate, percent-epochs, …";
"0.5,17,0.05,83" in the PD commands: 0.5 for the first 17 %, then 0.05).

Reported: ``weights`` = v after dropout (weight precision), ``selected`` = mentor's v ≥ ½
before dropout (LP/LR), ``score`` = mentor's v.

Departures from the original code:

* The percent-epoch advances per epoch (⌊100·e/E⌋), not per step (⌊100·step/steps⌋).
* The output layer is a plain linear layer; the original adds its bias to the *weight matrix*
  (``matmul(fc_1, W + b)``), a typo that makes the bias a per-unit weight offset.
* The mentor is trained with Adam at lr 0.1 decayed ×0.9 every 10 % (not every 1000) of the
  steps, batches of 512 (not 32), ``mentor_steps`` = 10 000 (not 30 000) steps, on one
  thread: the curriculum is fitted to a held-out MSE ≈ 0.001 (checked in the tests). It is
  trained in float64 on the CPU from a fixed seed, so every machine builds the same mentor (in
  float32, 3000 Adam steps amplified kernel rounding differences into another mentor on
  another CPU, and 3000 steps were too few to fit the last phase reliably); the default
  setting (γ 1, 10 000 steps, seed 0) is shipped as ``_mentor_pd_weights.py``, written by
  ``scripts/make_mentor_weights.py`` (about 50 s of one CPU), and not trained at run time.
* Weight decay (``decay_scaling="v"``, the default, as cifar_train_mentornet.py:228
  ``decay_loss * (reduce_sum(v) / batch_size)``): the run's ``weight_decay`` is taken out of
  the optimizer and added to the loss as ½·wd·(Σv/b)·Σ‖w‖² (v after example dropout), over
  every parameter the optimizer decayed (the original's ``resnet.decay()`` covers the conv
  and fc weights only, not BatchNorm); ``decay_scaling="off"``: the optimizer's plain decay
  (the behaviour before). The logged training loss includes the decay term.
* λ's percentile uses ``torch.quantile(..., interpolation="nearest")`` (TF's
  ``percentile`` default).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import (
    METHODS,
    ConfigError,
    Method,
    StepOutput,
    batch_mean,
    gather_batch,
    local_part,
    replicated_term,
)

# --------------------------------------------------------------------------------------------
# the curriculum and the mentor network


def vstar_mentornet_pd(
    loss_diff: torch.Tensor, epoch_pct: torch.Tensor, gamma: float = 1.0
) -> torch.Tensor:
    """v* of MentorNet-PD for (n,) loss differences ℓ − λ and (n,) percent-epochs."""
    self_paced = (loss_diff <= 0).float()
    spcl = (1.0 - loss_diff / gamma).clamp(0.0, 1.0)
    v = torch.where(epoch_pct >= 90, spcl, self_paced)
    return torch.where(epoch_pct <= 18, torch.ones_like(v), v)


class MentorNet(nn.Module):
    """g_m(ℓ, ℓ − λ, label, percent-epoch) → logit of v (see the module docstring)."""

    def __init__(
        self, label_embedding_size: int = 2, epoch_embedding_size: int = 5, num_fc_nodes: int = 20
    ):
        super().__init__()
        # the input-gate and cell-candidate rows of a 1-unit LSTM cell, forward and backward
        self.gates = nn.Linear(2, 4)
        self.label_embedding = nn.Embedding(2, label_embedding_size)
        bound = math.sqrt(6.0 / (100 + epoch_embedding_size))  # glorot uniform, as TF
        self.register_buffer(
            "epoch_embedding", torch.empty(100, epoch_embedding_size).uniform_(-bound, bound)
        )
        self.fc1 = nn.Linear(label_embedding_size + epoch_embedding_size + 2, num_fc_nodes)
        self.fc2 = nn.Linear(num_fc_nodes, 1)

    def forward(self, loss, loss_diff, label, epoch_pct) -> torch.Tensor:
        # A 1-unit LSTM over a one-step sequence from the zero state ends in the cell state
        # c = σ(W_i·x + b_i)·tanh(W_g·x + b_g) (the forget and output gates do not reach c);
        # the bidirectional pair is two such cells on the same step.
        gates = self.gates(torch.stack([loss, loss_diff], 1)).view(-1, 2, 2)  # (b, dir, i/g)
        h = torch.sigmoid(gates[..., 0]) * torch.tanh(gates[..., 1])  # (b, 2) cell states
        epoch = epoch_pct.long().clamp(0, 99)
        feat = torch.cat([self.label_embedding(label.long()), self.epoch_embedding[epoch], h], 1)
        return self.fc2(torch.tanh(self.fc1(feat))).squeeze(1)


def curriculum_grid(
    gamma: float = 1.0, sample_size: int = 100_000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's training grid for the PD mentor: (n, 4) inputs (ℓ, ℓ − λ, label 0,
    percent-epoch) and (n,) targets v*, ``sample_size`` points drawn without replacement."""
    l_ = np.concatenate((np.arange(0, 10, 0.1), np.arange(10, 30, 1)))
    diff = np.arange(-5, 5, 0.1)
    ep = np.arange(0, 100, 1)
    grid = np.stack(np.meshgrid(l_, diff, [0.0], ep, indexing="ij"), -1).reshape(-1, 4)
    rng = np.random.default_rng(seed)
    grid = grid[rng.permutation(len(grid))[:sample_size]]
    x = torch.as_tensor(grid, dtype=torch.float32)
    return x, vstar_mentornet_pd(x[:, 1], x[:, 3], gamma)


LR = 0.1  # Adam learning rate of the mentor, as the original (×0.9 every 10 % of the steps)


@functools.lru_cache(maxsize=4)
def _trained_mentor_state(gamma: float, steps: int, seed: int) -> tuple:
    if (gamma, steps, seed) == (1.0, 10000, 0):  # the default: shipped, the same everywhere
        from . import _mentor_pd_weights as w  # lazy: ~0.2 s to import, default mentor only

        return {k: torch.tensor(v, dtype=torch.float64) for k, v in w.STATE.items()}, w.TEST_MSE
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: thread hand-offs cost more than the maths
    try:
        return _train_mentor(gamma, steps, seed)
    finally:
        torch.set_num_threads(threads)


def _train_mentor(gamma: float, steps: int, seed: int, lr: float = LR) -> tuple:
    """Train the mentor in float64 on the CPU (deterministic: the same on every machine)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x, v = curriculum_grid(gamma, seed=seed)
        x, v = x.double(), v.double()
        n_train = int(0.8 * len(x))
        xt, vt = x[:n_train], v[:n_train]
        net = MentorNet().double()
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        decay_every = max(1, steps // 10)
        g = torch.Generator().manual_seed(seed)
        for s in range(steps):
            for grp in opt.param_groups:
                grp["lr"] = lr * 0.9 ** (s // decay_every)
            i = torch.randint(0, n_train, (512,), generator=g)
            xb = xt[i]
            out = torch.sigmoid(net(xb[:, 0], xb[:, 1], xb[:, 2], xb[:, 3]))
            loss = F.mse_loss(out, vt[i])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
        with torch.no_grad():
            xs, vs = x[n_train:], v[n_train:]
            test_mse = float(
                F.mse_loss(torch.sigmoid(net(xs[:, 0], xs[:, 1], xs[:, 2], xs[:, 3])), vs)
            )
    return {k: t.clone() for k, t in net.state_dict().items()}, test_mse


def pretrained_mentor(
    gamma: float = 1.0, steps: int = 10000, seed: int = 0, device: torch.device | str = "cpu"
) -> tuple[MentorNet, float]:
    """The PD mentor trained to imitate v* (cached per process); returns (mentor, test MSE)."""
    state, mse = _trained_mentor_state(float(gamma), int(steps), int(seed))
    net = MentorNet()
    net.load_state_dict({k: t.float() for k, t in state.items()})
    net.to(device).eval().requires_grad_(False)
    return net, mse


def parse_dropout_rates(spec: str) -> list[float]:
    """ "rate, percent-epochs, ..." → 100 per-percent rates (``parse_dropout_rate_list``)."""
    parts = [p for p in spec.replace(" ", "").split(",") if p]
    if len(parts) % 2:
        raise ConfigError(f"mentornet: dropout_rates {spec!r} must be pairs 'rate,epochs,...'")
    rates: list[float] = []
    for r, n in zip(parts[::2], parts[1::2]):
        r_, n_ = float(r), int(n)
        if not 0 <= r_ <= 1:
            raise ConfigError(f"mentornet: dropout rate {r_} must lie in [0, 1]")
        rates += [r_] * n_
    if len(rates) != 100:
        raise ConfigError(
            f"mentornet: dropout_rates {spec!r} must cover 100 percent-epochs (got {len(rates)})"
        )
    return rates


# --------------------------------------------------------------------------------------------
# the method


@METHODS.register("mentornet")
class MentorNetPD(Method):
    """MentorNet-PD: a mentor net imitating a pre-defined self-paced curriculum weights samples."""

    name = "mentornet"
    distributed = True  # W > 1: λ (EMA of the percentile), v and dropout of the global batch

    @dataclass
    class Config:
        p: float = 0.75  # loss_p_percentile of λ (0.5 in the original's 80 %-noise command)
        ema_decay: float = 0.5  # loss_moving_average_decay of λ
        burn_in_epoch: int = 0  # burn-in, in percent-epochs (v = 1 before it)
        fixed_epoch_after_burn_in: bool = False  # feed min(epoch %, burn-in) (True for DD)
        dropout_rates: str = "0.5,17,0.05,83"  # example dropout: rate, percent-epochs, ...
        gamma: float = 1.0  # γ of the SPCL-linear part of v*
        mentor_steps: int = 10000  # training steps of the mentor on the curriculum grid
        mentor_seed: int = 0  # seed of the mentor's grid, initialisation and batches
        decay_scaling: Literal["v", "off"] = "v"  # weight decay × Σv/b (official) or plain

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if not 0 < config.p <= 1:
            raise ConfigError("mentornet: p must lie in (0, 1]")
        self.rates = parse_dropout_rates(config.dropout_rates)
        self.models = {"net": ctx.make_model()}
        self.mentor, self.mentor_mse = pretrained_mentor(
            config.gamma, config.mentor_steps, config.mentor_seed, ctx.device
        )
        self.loss_ema = torch.zeros((), device=ctx.device)  # λ
        self.state_names = ("loss_ema",)
        self._v_sum = torch.zeros(2, device=ctx.device)  # Σv, count (per epoch, for logs)

    def epoch_pct(self, epoch: int) -> int:
        pct = min(99, int(100 * epoch / max(self.ctx.epochs, 1)))
        if self.config.fixed_epoch_after_burn_in:
            pct = min(pct, self.config.burn_in_epoch)
        return pct

    def weights(self, loss: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(v before dropout, v after dropout) for (b,) detached losses; updates λ."""
        cfg = self.config
        cur = self.epoch_pct(epoch)
        perc = torch.quantile(loss, cfg.p, interpolation="nearest")
        self.loss_ema = self.loss_ema * cfg.ema_decay + (1 - cfg.ema_decay) * perc
        diff = loss - self.loss_ema
        b = len(loss)
        ep = torch.full((b,), cur, device=loss.device)
        v = torch.sigmoid(self.mentor(loss, diff, torch.zeros_like(ep), ep))
        if cur < cfg.burn_in_epoch - 1:
            v = torch.ones_like(v)
        keep = int(b * (1 - self.rates[cur]))
        mask = torch.zeros(b, dtype=torch.bool, device=loss.device)
        if keep > 0:
            mask[torch.randperm(b, device=loss.device)[:keep]] = True
        return v, v * mask

    def training_step(self, batch, epoch):
        logits = self.models["net"](batch.x)
        ce = F.cross_entropy(logits.float(), batch.labels, reduction="none")
        with torch.no_grad():  # W > 1: λ, v and the dropout of the global batch, on every rank
            v, v_drop = self.weights(gather_batch(ce.detach()), epoch)
        self._v_sum += torch.stack([v_drop.sum(), v.new_full((), float(len(v)))])  # no H2D copy
        v_frac = v_drop.sum() / len(v_drop)
        v, v_drop = local_part(v), local_part(v_drop)
        loss = batch_mean(ce * v_drop)
        wd = float(getattr(self.ctx.config, "weight_decay", 0.0) or 0.0)
        if self.config.decay_scaling == "v" and wd > 0:
            if self.optimizer is not None:  # the decay is in the loss, scaled by Σv/b
                for g in self.optimizer.param_groups:
                    g["weight_decay"] = 0.0
            sq = sum((p.float() ** 2).sum() for p in self.models["net"].parameters())
            loss = loss + replicated_term(0.5 * wd * v_frac * sq)
        return StepOutput(loss=loss, logits=logits, weights=v_drop, selected=v >= 0.5, score=v)

    def on_epoch_end(self, epoch):
        s, n = self._v_sum.tolist()
        self._v_sum.zero_()
        return {
            "mentor_lambda": float(self.loss_ema),
            "mentor_mean_v": s / max(n, 1),
            "mentor_epoch_pct": self.epoch_pct(epoch),
        }
