"""``coteaching-plus``: Co-teaching+ (Yu et al., ICML 2019), disagreement + small loss.

Two networks as in Co-teaching, but after ``init_epochs`` each batch is first cut to the
samples on which the two networks' predictions **disagree**; on those, each network keeps its
⌊R(T)·d⌋ smallest losses (d = disagreeing samples) and net 1 is updated on net 2's picks, net 2
on net 1's (the exchange, ``coteaching.coteaching_loss``). Before ``init_epochs`` it is plain
Co-teaching on the whole batch. R(T) is the official ramp (``coteaching.keep_rate`` with
``schedule="official"``: ``linspace(0, τ, T_k)``, training from epoch index 1).

Follows ``xingruiyu/coteaching_plus`` (``loss.py``, ``main.py``), including its quirks:

* **Softmax twice** in the disagreement phase: the code passes ``softmax(logits)`` to
  ``F.cross_entropy``, which applies log-softmax again (``softmax_twice=True``; the plain
  Co-teaching phase uses the logits). ``softmax_twice false`` gives the paper's CE.
* **No disagreement** in a batch: train on the whole batch while the code's ``step`` is below
  5000, else nothing (loss 0). The code's ``step`` is ``epoch × batch index`` (not a global
  step count); we use the same product with the 1-based epoch index the code trains with.
* ``init_epochs``: the code's ``init_epoch`` (MNIST 0, CIFAR-10 20, CIFAR-100 5); default 0.

Departures: each pick's loss is averaged once (mean over the picks; the code divides the mean
again by the number kept, as in Co-teaching); the engine's optimizer and schedule (not the
code's Adam with linear decay and β1 0.9 → 0.1 from epoch 80); one forward pass per network.
The engine's "selected" is what net 1 trains on (net 2's picks among the disagreeing samples;
all or none of the batch when nothing disagrees); ``score`` is −CE of net 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import (
    METHODS,
    ConfigError,
    Method,
    StepOutput,
    batch_len,
    batch_mean,
    global_sum,
    keep_smallest,
)
from .coteaching import coteaching_loss, keep_rate, num_kept


def coteaching_plus_loss(
    logits1: torch.Tensor,
    logits2: torch.Tensor,
    labels: torch.Tensor,
    rate: float,
    step: int,
    *,
    softmax_twice: bool = True,
    all_until_step: int = 5000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Co-teaching+ on one batch (after the initial Co-teaching epochs).

    Args:
        logits1, logits2: (b, K) logits of net 1 and net 2 (with graph).
        labels: (b,) given labels.  rate: R(T), the keep rate.
        step: the code's ``epoch × batch index`` (whole batch trained when nothing
            disagrees and ``step < all_until_step``).

    Returns:
        ``(loss, selected)``: the scalar loss and the (b,) bool mask net 1 trained on.
    """
    disagree = logits1.detach().argmax(1) != logits2.detach().argmax(1)
    in1 = torch.softmax(logits1.float(), 1) if softmax_twice else logits1.float()
    in2 = torch.softmax(logits2.float(), 1) if softmax_twice else logits2.float()
    # masks and device counts throughout: the number of disagreeing samples d, and so the
    # pick size, is never read back to the host
    d = global_sum(disagree.sum())  # W > 1: over the global batch (picks: keep_smallest)
    ce1 = F.cross_entropy(in1, labels, reduction="none")
    ce2 = F.cross_entropy(in2, labels, reduction="none")
    k = (d.double() * rate).floor().long()  # the code's int(R·d)
    k = torch.where(k == 0, d, k)  # the code then keeps all disagreeing samples
    pick1 = keep_smallest(ce1, disagree, k)
    pick2 = keep_smallest(ce2, disagree, k)
    kk = k.clamp_min(1)
    loss_d = (ce1 * pick2).sum() / kk + (ce2 * pick1).sum() / kk
    # nothing disagrees: the whole batch while step < all_until_step, else nothing
    on = step < all_until_step
    loss_all = (batch_mean(ce1) + batch_mean(ce2)) * float(on)
    none = d == 0
    loss = torch.where(none, loss_all, loss_d)
    sel = torch.where(none, torch.full_like(disagree, on), pick2)
    return loss, sel


@METHODS.register("coteaching-plus")
class CoTeachingPlus(Method):
    """Co-teaching+ (ICML 2019): Co-teaching's exchange on the samples the networks disagree on."""

    name = "coteaching-plus"
    needs = frozenset({"noise_rate"})
    distributed = True  # W > 1: disagreement counted and ranked over the global batch

    @dataclass
    class Config:
        t_k: int = 10
        """T_k (the code's num_gradual), epochs over which the drop rate ramps up to τ."""
        init_epochs: int = 0
        """Epochs of plain Co-teaching first (code: MNIST 0, CIFAR-10 20, CIFAR-100 5)."""
        softmax_twice: bool = True
        """The code's CE of softmax outputs in the disagreement phase (false: the paper's)."""
        all_until_step: int = 5000
        """With no disagreement, train on the whole batch while epoch × batch index < this."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if config.t_k < 1 or config.init_epochs < 0:
            raise ConfigError(
                f"coteaching-plus: need t_k ≥ 1 and init_epochs ≥ 0; got t_k={config.t_k}, "
                f"init_epochs={config.init_epochs}"
            )
        if ctx.noise_rate is None:
            raise ConfigError(
                "coteaching-plus needs the noise rate τ: pass --tau RATE or --tau auto"
            )
        self.tau = float(ctx.noise_rate)
        self.models = {"net1": ctx.make_model(), "net2": ctx.make_model()}
        self._step = 0  # batch index within the epoch (the code's i)

    def keep_rate(self, epoch: int) -> float:
        return keep_rate(epoch, self.tau, self.config.t_k, 1.0, "official")

    def on_epoch_start(self, epoch):
        self._step = 0

    def on_epoch_end(self, epoch):
        return {"keep_rate": self.keep_rate(epoch)}

    def training_step(self, batch, epoch):
        c = self.config
        y = batch.labels
        logits1 = self.models["net1"](batch.x)
        logits2 = self.models["net2"](batch.x)
        rate = self.keep_rate(epoch)
        ce2 = F.cross_entropy(logits2.float(), y, reduction="none")
        if epoch < c.init_epochs:
            ce1 = F.cross_entropy(logits1.float(), y, reduction="none")
            loss, _, sel = coteaching_loss(ce1, ce2, num_kept(rate, batch_len(batch), "official"))
        else:
            step = (epoch + 1) * self._step  # the code: epoch (from 1) × batch index
            loss, sel = coteaching_plus_loss(
                logits1,
                logits2,
                y,
                rate,
                step,
                softmax_twice=c.softmax_twice,
                all_until_step=c.all_until_step,
            )
        self._step += 1
        return StepOutput(loss=loss, logits=logits1, selected=sel, score=-ce2.detach())
