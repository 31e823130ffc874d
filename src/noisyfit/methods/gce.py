"""``gce``: generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018).

One network, every sample, the loss of the given label y with softmax probability p_y:

    L_q(p, y) = (1 − p_y^q) / q,        q ∈ (0, 1];

q → 0 is cross-entropy, q = 1 is the (noise-robust) mean absolute error. Its gradient is the
cross-entropy gradient weighted by p_y^q: samples the network finds unlikely (often the wrong
labels) pull less. Default q = 0.7 (the paper's and its official code's value,
``AlanChou/Truncated-Loss``).

Departures: the truncated variant L_trunc (a pruning threshold k = 0.5 with per-sample weights
re-estimated every 10 epochs from epoch 40) is not implemented; this is the untruncated L_q.
The engine's "weights" for label precision/recall are the implicit gradient weights p_y^q
(detached); nothing is selected or relabelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import METHODS, ConfigError, Method, StepOutput, batch_mean


def gce_loss(logits: torch.Tensor, labels: torch.Tensor, q: float) -> torch.Tensor:
    """(b,) per-sample L_q = (1 − p_y^q)/q of logits (b, K) and labels (b,)."""
    p_y = torch.softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    return (1.0 - p_y.clamp_min(1e-12) ** q) / q


@METHODS.register("gce")
class GCE(Method):
    """Generalized cross-entropy L_q = (1 − p_y^q)/q (NeurIPS 2018): between CE and MAE."""

    name = "gce"
    distributed = True

    @dataclass
    class Config:
        q: float = 0.7
        """q in (0, 1]: 0 → cross-entropy, 1 → mean absolute error (paper 0.7)."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if not 0 < config.q <= 1:
            raise ConfigError(f"gce: q must lie in (0, 1] (paper 0.7); got q={config.q}")
        self.models = {"net": ctx.make_model()}

    def training_step(self, batch, epoch):
        logits = self.models["net"](batch.x)
        per = gce_loss(logits, batch.labels, self.config.q)
        with torch.no_grad():
            p_y = torch.softmax(logits.float(), 1).gather(1, batch.labels[:, None]).squeeze(1)
        return StepOutput(
            loss=batch_mean(per), logits=logits, weights=p_y**self.config.q, score=p_y.detach()
        )
