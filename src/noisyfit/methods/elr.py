"""``elr``: Early-Learning Regularization (Liu, Niles-Weed, Razavian, Fernandez-Granda,
NeurIPS 2020), as in the official code ``shengliu66/ELR`` (``ELR/model/loss.py``, HEAD
``934af53``).

Per sample i the method keeps a target t_i ∈ Δ^K, a temporal ensemble of the network's
predictions. In each step, for the batch's samples, with p = clamp(softmax(z), 1e-4, 1 − 1e-4):

    t_i ← β·t_i + (1 − β)·p_i / Σ_k p_ik                  (detached; t starts at 0)
    loss = CE(z, y) + λ · mean_i log(1 − ⟨t_i, p_i⟩)

The regularizer pulls each prediction towards its early-learning target, so the network does not
memorize the wrong labels. Defaults follow ``ELR/config_cifar10.json``: β = 0.7, λ = 3 (CIFAR-100
uses β = 0.9, λ = 7 in ``config_cifar100.json``); the code trains with SGD lr 0.02, momentum 0.9,
weight decay 1e-3 and cosine annealing with warm restarts (T_0 = 10) for 150 epochs — the engine's
optimizer and schedule are used instead.

Reported to the engine (scored against the truth like every method): the loss uses every sample;
``selected`` is the README's identification rule, argmax_k t_ik = y_i (a sample whose target agrees
with its given label is deemed clean), and ``score`` = t_{i,y_i}.

``--mixup ALPHA`` (the engine's add-on) is accepted: CE against the mixed labels and the
regularizer against the mixed targets λ·t_i + (1 − λ)·t_perm(i) (the ELR+ code's rule); the target
update uses the prediction on the mixed input of sample i (the ELR+ code updates it from an extra
forward pass of a second network on the clean input, see ``elr-plus``).

Departures from the official code: none in the rule; the per-sample targets are a tensor of the
method's state (checkpointed), not a buffer of the loss module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import METHODS, ConfigError, Method, StepOutput, batch_ce, batch_mean


def elr_target_update(target: torch.Tensor, probs: torch.Tensor, beta: float) -> torch.Tensor:
    """The new targets (b, K): β·t + (1 − β)·p/Σp, for (b, K) targets and clamped probs."""
    p = probs.detach()
    return beta * target + (1 - beta) * p / p.sum(1, keepdim=True)


def elr_regularizer(target: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """mean_i log(1 − ⟨t_i, p_i⟩) for (b, K) targets (no gradient) and clamped probs."""
    return batch_mean((1 - (target.detach() * probs).sum(1)).log())


def clamped_softmax(logits: torch.Tensor) -> torch.Tensor:
    """softmax(z) clamped to [1e-4, 1 − 1e-4], as the official code (b, K)."""
    return logits.float().softmax(1).clamp(1e-4, 1.0 - 1e-4)


@METHODS.register("elr")
class ELR(Method):
    """ELR (NeurIPS 2020): cross-entropy plus a pull towards each sample's prediction EMA."""

    name = "elr"
    distributed = True  # W > 1: targets rows synced by the engine; means over the global batch
    supports_mixup = True

    @dataclass
    class Config:
        beta: float = 0.7
        """β, momentum of the per-sample target EMA (official CIFAR-10 0.7; CIFAR-100 0.9)."""
        lam: float = 3.0
        """λ, weight of the regularizer (official CIFAR-10 3; CIFAR-100 7)."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if not 0 <= config.beta < 1 or config.lam < 0:
            raise ConfigError(
                f"elr: need 0 ≤ beta < 1 and lam ≥ 0; got beta={config.beta}, lam={config.lam}"
            )
        self.models = {"net": ctx.make_model()}
        self.targets = torch.zeros(ctx.num_samples, ctx.num_classes, device=ctx.device)
        self.state_names = ("targets",)

    def training_step(self, batch, epoch):
        c = self.config
        y, idx = batch.labels, batch.index
        logits = self.models["net"](batch.x)
        probs = clamped_softmax(logits)
        t = elr_target_update(self.targets[idx], probs, c.beta)
        self.targets[idx] = t
        if self.mix is not None:
            ce = self.mix.ce(logits, y).mean()
            reg = elr_regularizer(self.mix.targets(t), probs)
        else:
            ce = batch_ce(logits.float(), y)
            reg = elr_regularizer(t, probs)
        return StepOutput(
            loss=ce + c.lam * reg,
            logits=logits,
            selected=t.argmax(1) == y,
            score=t.gather(1, y[:, None])[:, 0],
        )
