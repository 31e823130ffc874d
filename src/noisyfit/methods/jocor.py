"""``jocor``: JoCoR, joint training with co-regularization (Wei et al., CVPR 2020).

Two networks see the same batch; each sample gets one **joint loss**

    ℓ_i = (1 − λ)·(CE(f₁(x_i), y_i) + CE(f₂(x_i), y_i))
          + λ·(KL(p₂ ‖ p₁) + KL(p₁ ‖ p₂)),          p_j = softmax(f_j(x_i)),

the batch's ⌊R(T)·b⌋ smallest joint losses are kept and **both** networks are updated on the
mean of ℓ over them (no exchange: the agreement term pulls the two networks together). The
keep rate R(T) is Co-teaching's ramp in the official code's form (``coteaching.keep_rate``
with ``schedule="official"``): ``linspace(0, τ^c, T_k)`` over the first T_k epoch indices,
training from index 1, τ after; kept = ``int(R·b)``.

Follows ``hongxin001/JoCoR`` (``algorithm/loss.py``, ``algorithm/jocor.py``):

* KL(p ‖ q) is ``F.kl_div(log_softmax(pred), softmax(target))`` with gradient through **both**
  arguments (the code detaches neither), summed over classes;
* one optimizer over both networks (the code's single Adam);
* forget rate = τ (the code halves it for its ``asymmetric`` noise; pass ``--tau``);
* λ default 0.9: the README's best value for CIFAR-10 at 20 %/50 % symmetric and 40 %
  asymmetric noise (the code's command-line default is 0.1; the README gives 0.65 for 80 %).

Departures: the engine's optimizer and schedule are used (the code's Adam with linear decay
from epoch 80 and β1 0.9 → 0.1 is not reproduced); batches are a seeded permutation per epoch;
no 400-iteration cap per epoch. The engine's "selected" are the kept samples; ``score`` is −ℓ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import METHODS, ConfigError, Method, StepOutput, batch_len, small_loss_mask
from .coteaching import keep_rate, num_kept


def symmetric_kl(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """(b,) KL(p₂ ‖ p₁) + KL(p₁ ‖ p₂) of two (b, K) logits, gradient through both."""
    lp1, lp2 = F.log_softmax(logits1, 1), F.log_softmax(logits2, 1)
    kl_21 = (lp2.exp() * (lp2 - lp1)).sum(1)  # KL(p2 || p1): target p2, prediction p1
    kl_12 = (lp1.exp() * (lp1 - lp2)).sum(1)
    return kl_21 + kl_12


def jocor_loss(
    logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, k: int, co_lambda: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The JoCoR step on one batch.

    Args:
        logits1, logits2: (b, K) logits of the two networks (with graph).
        labels: (b,) given labels.  k: samples kept.  co_lambda: λ.

    Returns:
        ``(loss, keep, joint)``: the scalar mean joint loss over the kept samples, the (b,)
        bool mask of the k smallest joint losses, and the (b,) joint losses ℓ.
    """
    logits1, logits2 = logits1.float(), logits2.float()
    ce = F.cross_entropy(logits1, labels, reduction="none") + F.cross_entropy(
        logits2, labels, reduction="none"
    )
    joint = (1 - co_lambda) * ce + co_lambda * symmetric_kl(logits1, logits2)
    keep = small_loss_mask(joint, k)
    loss = (joint * keep).sum() / max(1, k)
    return loss, keep, joint


@METHODS.register("jocor")
class JoCoR(Method):
    """JoCoR (CVPR 2020): two networks, joint loss with co-regularization, small-loss picks."""

    name = "jocor"
    needs = frozenset({"noise_rate"})
    distributed = True  # W > 1: the k smallest joint losses of the global batch

    @dataclass
    class Config:
        co_lambda: float = 0.9
        """λ, weight of the co-regularization (README 0.9; code default 0.1)."""
        t_k: int = 10
        """T_k (the code's num_gradual), epochs over which the drop rate ramps up to τ."""
        exponent: float = 1.0
        """c, the ramp reaches τ^c before jumping to τ (the code's exponent)."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if not 0 <= config.co_lambda <= 1 or config.t_k < 1 or config.exponent <= 0:
            raise ConfigError(
                f"jocor: need 0 ≤ co_lambda ≤ 1, t_k ≥ 1, exponent > 0; got co_lambda="
                f"{config.co_lambda}, t_k={config.t_k}, exponent={config.exponent}"
            )
        if ctx.noise_rate is None:
            raise ConfigError("jocor needs the noise rate τ: pass --tau RATE or --tau auto")
        self.tau = float(ctx.noise_rate)
        self.models = {"net1": ctx.make_model(), "net2": ctx.make_model()}

    def keep_rate(self, epoch: int) -> float:
        c = self.config
        return keep_rate(epoch, self.tau, c.t_k, c.exponent, "official")

    def on_epoch_end(self, epoch):
        return {"keep_rate": self.keep_rate(epoch)}

    def training_step(self, batch, epoch):
        y = batch.labels
        logits1 = self.models["net1"](batch.x)
        logits2 = self.models["net2"](batch.x)
        k = num_kept(self.keep_rate(epoch), batch_len(batch), "official")
        loss, keep, joint = jocor_loss(logits1, logits2, y, k, self.config.co_lambda)
        return StepOutput(loss=loss, logits=logits1, selected=keep, score=-joint.detach())
