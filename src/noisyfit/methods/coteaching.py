"""``coteaching``: Co-teaching (Han et al., NeurIPS 2018), as in the SELFIE repository.

Two networks of the same architecture see the same batch. Each ranks the batch by its own
cross-entropy against the given labels and keeps the R(T)·b smallest; **net 1 is updated on
net 2's picks and net 2 on net 1's** (the exchange). With T the number of the epoch being
trained, counted from 1,

    R(T) = 1 − τ·min((T / T_k)^c, 1),     kept per batch: ⌈R(T)·b⌉,

τ the noise rate (the code's ``forget_rate`` = noise rate), T_k the epochs over which the drop
rate ramps up, c the exponent. Defaults follow ``SELFIE/algorithm/coteaching.py`` (HEAD
``cc5d602``): T_k = 15 (10 before the 2020 upload), c = 1, and its epoch offset — its loop
uses (epoch + 1)/T_k with a 0-based epoch, so the first epoch already drops τ/T_k of the batch
and the full rate τ is reached in epoch T_k (1-based).

``schedule="official"`` reproduces the official PyTorch code (``bhanML/Co-teaching``; use it
with ``t_k=10``): the drop rate of epoch index i is ``linspace(0, τ^c, T_k)[i]`` for i < T_k and
τ after, and training starts at index 1 — so our 0-based epoch e uses index e + 1: the first
trained epoch drops τ^c/(T_k − 1), τ^c is reached at index T_k − 1 and then it jumps to τ (for
c ≠ 1 this is not the paper's formula); kept = ⌊(1 − rate)·b⌋ (``int()``). Its Adam schedule
(linear LR decay to 0 and β1 0.9 → 0.1 from ``epoch_decay_start`` 80, main.py
``alpha_plan``/``beta1_plan``) is the engine's ``--lr-schedule linear-decay --lr-decay-start
80`` with ``--optimizer adam`` (the ``coteaching-*`` presets; the official 200 epochs are 199
trained epochs, index 0 being the evaluation of the random weights).

The loss is averaged once: mean over net 2's picks of net 1's CE + mean over net 1's picks of
net 2's CE (the official code divides a mean again by the number kept). One optimizer covers
both networks; with per-parameter updates that equals one optimizer per network.

Departures from the SELFIE-repo code:

* **One forward pass per network** (``forward="one"``, the default) gives both the ranking
  losses and the gradient; the SELFIE-repo code runs a second forward pass on the selected
  samples, so dropout masks and BatchNorm batch statistics differ between ranking and update
  — ``forward="two"`` does that (the ranking pass without gradient; the official bhanML code
  uses one pass, as our default). Measured in docs/benchmarks.md.
* **Logged training loss/error per network** (``train_loss_net1`` …, the columns of
  ``selfie-cli``'s 10-column log.csv) are averages over the epoch's batches (all samples,
  given labels, before each update); the code re-runs both networks over the training set in
  order after each epoch (with the L2 term in the loss).
* The engine's "selected" for label precision/recall is the set net 1 trains on (net 2's
  picks); ``score`` is −CE of net 2, the ranking that chose it.
* Batches are a seeded permutation per epoch instead of independent random draws.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..distributed import all_reduce_sum
from .base import (
    METHODS,
    ConfigError,
    Method,
    StepOutput,
    batch_len,
    current_step,
    small_loss_mask,
)


def keep_rate(
    epoch: int, tau: float, t_k: int, exponent: float = 1.0, schedule: str = "selfie"
) -> float:
    """R for the 0-based engine epoch ``epoch`` (see the module docstring)."""
    if schedule == "official":
        i = epoch + 1  # the official loop trains epochs 1 … n_epoch − 1
        if i < t_k and t_k > 1:
            return 1.0 - tau**exponent * i / (t_k - 1)
        return 1.0 - tau
    t = epoch + 1
    return 1.0 - tau * min((t / t_k) ** exponent, 1.0)


def num_kept(rate: float, b: int, schedule: str = "selfie") -> int:
    """Samples kept of a batch of ``b``: ⌈R·b⌉ (SELFIE repo), ⌊R·b⌋ (official)."""
    if schedule == "official":
        return int(rate * b)
    return math.ceil(rate * b - 1e-9)


def coteaching_loss(
    ce1: torch.Tensor, ce2: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exchange on one batch.

    Args:
        ce1, ce2: (b,) per-sample cross-entropies of net 1 and net 2 (with graph).
        k: samples each network keeps.

    Returns:
        ``(loss, pick1, pick2)``: the scalar loss = mean of ce1 over net 2's picks + mean of
        ce2 over net 1's picks, and the (b,) bool picks of net 1 and net 2 (their k smallest
        own losses).
    """
    pick1 = small_loss_mask(ce1, k)
    pick2 = small_loss_mask(ce2, k)
    kk = max(1, k)
    loss = (ce1 * pick2).sum() / kk + (ce2 * pick1).sum() / kk
    return loss, pick1, pick2


@METHODS.register("coteaching")
class CoTeaching(Method):
    """Co-teaching (NeurIPS 2018): two networks train on each other's small-loss samples."""

    name = "coteaching"
    short_run_options = {"t_k": "{quarter}"}
    needs = frozenset({"noise_rate"})
    distributed = True  # W > 1: each network ranks the global batch (small_loss_mask)

    @dataclass
    class Config:
        t_k: int = 15
        """T_k, epochs over which the drop rate ramps up to τ (SELFIE repo 15; official 10)."""
        exponent: float = 1.0
        """c, exponent of the ramp (T/T_k)^c."""
        schedule: Literal["selfie", "official"] = "selfie"
        """Epoch offset and rounding of the SELFIE repo (⌈⌉) or the official PyTorch code."""
        forward: Literal["one", "two"] = "one"
        """``two``: the SELFIE repo's second forward pass on each network's picks."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if config.t_k < 1 or config.exponent <= 0:
            raise ConfigError(
                f"coteaching: need t_k ≥ 1 and exponent > 0; got t_k="
                f"{config.t_k}, exponent={config.exponent}"
            )
        if ctx.noise_rate is None:
            raise ConfigError("coteaching needs the noise rate τ: pass --tau RATE or --tau auto")
        self.tau = float(ctx.noise_rate)
        self.models = {"net1": ctx.make_model(), "net2": ctx.make_model()}
        # the epoch's log: loss sums and errors of (net 1, net 2), samples seen
        self._loss_sums = torch.zeros(2, device=ctx.device)
        self._errors = torch.zeros(2, dtype=torch.int64, device=ctx.device)
        self._seen = 0

    def keep_rate(self, epoch: int) -> float:
        c = self.config
        return keep_rate(epoch, self.tau, c.t_k, c.exponent, c.schedule)

    def on_epoch_start(self, epoch):
        self._loss_sums.zero_()
        self._errors.zero_()
        self._seen = 0

    def on_epoch_end(self, epoch):
        sums, errors = all_reduce_sum(self._loss_sums), all_reduce_sum(self._errors)
        (l1, l2), (e1, e2), n = sums.tolist(), errors.tolist(), max(1, self._seen)
        return {
            "keep_rate": self.keep_rate(epoch),
            "train_loss_net1": l1 / n,
            "train_error_net1": e1 / n,
            "train_loss_net2": l2 / n,
            "train_error_net2": e2 / n,
        }

    def training_step(self, batch, epoch):
        y = batch.labels
        net1, net2 = self.models["net1"], self.models["net2"]
        k = num_kept(self.keep_rate(epoch), batch_len(batch), self.config.schedule)
        two = self.config.forward == "two" and k > 0
        with torch.no_grad() if two else contextlib.nullcontext():
            logits1 = net1(batch.x)
            logits2 = net2(batch.x)
        ce1 = F.cross_entropy(logits1.float(), y, reduction="none")
        ce2 = F.cross_entropy(logits2.float(), y, reduction="none")
        loss, pick1, pick2 = coteaching_loss(ce1, ce2, k)
        if two and current_step() is not None:  # W > 1: the share of the global means
            x = batch.x
            kw = dict(reduction="sum")
            loss = (
                F.cross_entropy(net1(x[pick2]).float(), y[pick2], **kw)
                + F.cross_entropy(net2(x[pick1]).float(), y[pick1], **kw)
            ) / k
        elif two:  # the SELFIE repo: each network's loss from a forward pass on its picks
            x = batch.x
            loss = F.cross_entropy(net1(x[pick2]).float(), y[pick2]) + F.cross_entropy(
                net2(x[pick1]).float(), y[pick1]
            )
        with torch.no_grad():
            ce = torch.stack([ce1, ce2])
            self._loss_sums += ce.sum(1)
            self._errors += (torch.stack([logits1, logits2]).argmax(2) != y).sum(1)
            self._seen += batch_len(batch)  # W > 1: the sums are all-reduced at the epoch end
        return StepOutput(loss=loss, logits=logits1, selected=pick2, score=-ce2.detach())
