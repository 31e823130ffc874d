"""``decoupling``: "Decoupling 'when to update' from 'how to update'" (Malach,
Shalev-Shwartz, NIPS 2017), ``emalach/UpdateByDisagreement`` (``train.py``, ``--dual``).

Two networks of the same architecture see the same batches. A sample enters the loss of
*both* networks only where their predicted labels disagree (update by disagreement), or every
sample during the first ``init_iter`` steps. Each network's loss is

    ℓ_k = Σ_i u_i·CE_k(x_i, ỹ_i) / max(b·min_batch_size, Σ_i u_i),   u_i = 1[pred1 ≠ pred2],

so a batch with few disagreements is not blown up to full weight (``min_batch_size`` = 0.1 of
the batch). The two losses are summed; the networks share no parameters, so one optimizer
over both equals the original's one optimizer per network.

Departures from the original code:

* The positive/negative class-balancing weights of the authors' binary gender task are
  dropped (the rule is generic, K classes).
* No gradient clipping (the original clips at norm 4 through ``optimize_loss``) and the
  optimizer/schedule are the run's.
* The ``min_batch_size = -1`` buffering mode (accumulate disagreeing samples into full
  batches) is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import METHODS, ConfigError, Method, StepOutput, current_step, global_sum


def disagreement_mask(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """(b,) bool: the two networks' predicted labels differ."""
    return logits1.argmax(1) != logits2.argmax(1)


def decoupled_loss(ce: torch.Tensor, update: torch.Tensor, min_batch_size: float) -> torch.Tensor:
    """Σ u·ce / max(b·min_batch_size, Σ u) for (b,) per-sample losses and (b,) bool u."""
    u = update.float()
    sh = current_step()  # W > 1: Σ u and b of the global batch (this rank's share of the loss)
    if sh is None:
        den = torch.clamp(u.sum(), min=len(ce) * min_batch_size)
    else:
        den = torch.clamp(global_sum(u.sum()), min=sh.global_size * min_batch_size)
    return (ce * u).sum() / den.clamp_min(1e-12)


@METHODS.register("decoupling")
class Decoupling(Method):
    """Decoupling: two networks, each updated only on samples where they disagree."""

    name = "decoupling"
    distributed = True

    @dataclass
    class Config:
        init_iter: int = 0  # steps at the start during which every sample is used
        min_batch_size: float = 0.1  # normaliser floor, as a fraction of the batch size

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if config.min_batch_size <= 0:
            raise ConfigError(
                "decoupling: min_batch_size must be > 0 (the buffering mode "
                "-1 of the original is not implemented)"
            )
        self.models = {"net1": ctx.make_model(), "net2": ctx.make_model()}
        self.step = 0  # global step, for init_iter
        self.state_names = ("step",)

    def training_step(self, batch, epoch):
        logits1 = self.models["net1"](batch.x)
        logits2 = self.models["net2"](batch.x)
        update = disagreement_mask(logits1.detach(), logits2.detach())
        if self.step < self.config.init_iter:
            update = torch.ones_like(update)
        self.step += 1
        ce1 = F.cross_entropy(logits1.float(), batch.labels, reduction="none")
        ce2 = F.cross_entropy(logits2.float(), batch.labels, reduction="none")
        m = self.config.min_batch_size
        loss = decoupled_loss(ce1, update, m) + decoupled_loss(ce2, update, m)
        return StepOutput(loss=loss, logits=logits1, selected=update)
