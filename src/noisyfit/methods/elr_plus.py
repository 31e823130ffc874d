"""``elr-plus``: ELR+ (Liu et al., NeurIPS 2020), as in the official code ``shengliu66/ELR``
(``ELR_plus/``: ``model/loss.py``, ``trainer/trainer.py``, ``config_cifar10.json``; HEAD
``934af53``).

Two networks f₁, f₂, each with a weight-averaged copy ē₁, ē₂ (a temporal-ensembling EMA of its
parameters). Per step, for network a (partner b), on the batch (x, y) with one-hot Y:

1. mixup: λ ~ Beta(α, α), λ ← max(λ, 1 − λ), a permutation π of the batch;
   x̃ = λ·x + (1 − λ)·x_π, Ỹ = λ·Y + (1 − λ)·Y_π.
2. targets from the **partner's EMA** on the clean input (no gradient):
   t_i ← β·t_i + (1 − β)·softmax(ē_b(x_i)) (normalized); q = λ·t + (1 − λ)·t_π.
3. loss_a = mean_i CE(f_a(x̃_i), Ỹ_i) + w(n)·λ_ELR·mean_i log(1 − ⟨q_i, clamp(softmax(f_a(x̃_i)))⟩),
   w(n) = exp(−5(1 − min(n, S_c)/S_c)²) (sigmoid ramp-up over ``coef_step`` S_c steps; 1 if 0).
   With K ≥ 100 classes the code also weights the labels by the targets: Ỹ ← Ỹ·q / Σ(Ỹ·q)
   (``weight_labels``).
4. after the optimizer step: ē_a ← α_n·ē_a + (1 − α_n)·f_a, α_n = w_ema(n + 1)·``ema_alpha``,
   w_ema the same sigmoid ramp-up over ``ema_step`` steps (n counts optimizer steps from 1).

Prediction: the mean of the two live networks' logits (``_test_epoch``: 0.5·(f₁ + f₂)).
Defaults (``ELR_plus/config_cifar10.json``): β = 0.7, λ_ELR = 3, α = 1, ema_alpha = 0.997,
ema_step = 40000, coef_step = 0; CIFAR-100 (``config_cifar100.json``): β = 0.9, λ_ELR = 7,
coef_step = 40000. The code trains with SGD lr 0.02, momentum 0.9, wd 5e-4, ×0.1 at epoch 150 of
200 (engine's optimizer and schedule here), no warm-up.

Reported to the engine: ``selected`` = argmax t⁽¹⁾_i = y_i (network 1's targets agree with the
given label), ``score`` = t⁽¹⁾_{i,y_i}; the loss uses every sample.

Departures from the official code (each said where it matters):

* **Both networks train in the same step, on the same batch** (the code runs one epoch of each
  network per epoch, each with its own shuffled loader, and the partner's EMA is the one of the
  start of that epoch only in its multi-GPU path). Each network draws its own λ and π.
* The EMA copies start as copies of their networks (the code builds them as separately
  initialized networks; with the ramp-up α starts at 0.997·e⁻⁵ ≈ 0.007, so they are replaced
  by the network within a few steps either way).
* The EMA networks run in training mode for the target pass, as the code (``model_ema.train()``):
  BatchNorm uses batch statistics and updates the EMA copy's own running statistics; only the
  parameters are averaged. The EMA update runs in ``after_step``, right after each optimizer step.
* The engine's ``--mixup`` is refused (ELR+ has its own mixup, ``alpha``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .base import (
    METHODS,
    ConfigError,
    Method,
    StepOutput,
    batch_len,
    batch_mean,
    current_step,
    gather_batch,
    local_part,
)
from .elr import clamped_softmax, elr_regularizer, elr_target_update


def sigmoid_rampup(current: float, length: float) -> float:
    """exp(−5·(1 − clip(current, 0, length)/length)²); 1 when ``length`` is 0 (the code's)."""
    if length == 0:
        return 1.0
    phase = 1.0 - min(max(current, 0.0), length) / length
    return float(math.exp(-5.0 * phase * phase))


def beta_lam(alpha: float | torch.Tensor, device: torch.device) -> torch.Tensor:
    """λ ~ Beta(α, α), then max(λ, 1 − λ), as a 0-d tensor on ``device``. With ``alpha`` a 0-d
    tensor on the device (as the method keeps it) nothing is copied or read back: no host
    sync (the distribution's argument validation, which reads values, is off)."""
    a = alpha if torch.is_tensor(alpha) else torch.tensor(float(alpha), device=device)
    lam = torch.distributions.Beta(a, a, validate_args=False).sample()
    return torch.maximum(lam, 1 - lam)


@METHODS.register("elr-plus")
class ELRPlus(Method):
    """ELR+ (NeurIPS 2020): two networks, targets from the partner's weight EMA, mixup."""

    name = "elr-plus"
    distributed = True  # W > 1: mixup partners from the global batch; targets synced here

    @dataclass
    class Config:
        beta: float = 0.7
        """β, momentum of the per-sample targets (official CIFAR-10 0.7; CIFAR-100 0.9)."""
        lam: float = 3.0
        """λ of the ELR term (official CIFAR-10 3; CIFAR-100 7)."""
        alpha: float = 1.0
        """α of the mixup Beta(α, α) (``mixup_alpha``; 0: no mixup)."""
        ema_alpha: float = 0.997
        """Final EMA decay of the weight-averaged networks (``ema_alpha``)."""
        ema_step: int = 40000
        """Steps of the sigmoid ramp-up of the EMA decay (``ema_step``; 0: none)."""
        coef_step: int = 0
        """Steps of the sigmoid ramp-up of the ELR weight (CIFAR-10 0; CIFAR-100 40000)."""
        weight_labels: bool | None = None
        """Weight the mixed labels by the targets (None: when K ≥ 100, as the code's
        ``num_classes == 100``)."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        c = config
        if not 0 <= c.beta < 1 or c.lam < 0 or c.alpha < 0 or not 0 <= c.ema_alpha < 1:
            raise ConfigError(
                "elr-plus: need 0 ≤ beta < 1, lam ≥ 0, alpha ≥ 0, 0 ≤ ema_alpha < 1; got "
                f"beta={c.beta}, lam={c.lam}, alpha={c.alpha}, ema_alpha={c.ema_alpha}"
            )
        if c.ema_step < 0 or c.coef_step < 0:
            raise ConfigError("elr-plus: ema_step and coef_step must be 0 or positive")
        self.models = {"net1": ctx.make_model(), "net2": ctx.make_model()}
        self._alpha = torch.tensor(float(c.alpha), device=ctx.device)  # mixup α, once
        self.emas = {k: copy.deepcopy(m) for k, m in self.models.items()}
        for m in self.emas.values():
            for p in m.parameters():
                p.requires_grad_(False)
        n, k = ctx.num_samples, ctx.num_classes
        self.targets = torch.zeros(2, n, k, device=ctx.device)  # t⁽¹⁾, t⁽²⁾
        self.weight_labels = c.weight_labels if c.weight_labels is not None else k >= 100
        self.steps = 0  # optimizer steps so far (n)
        self.state_names = ("targets", "steps")

    # -- the EMA networks -------------------------------------------------------------------
    @torch.no_grad()
    def after_step(self) -> None:
        """The EMA update of the optimizer step just taken."""
        self.steps += 1
        c = self.config
        a = sigmoid_rampup(self.steps + 1, c.ema_step) * c.ema_alpha
        for k, m in self.models.items():
            for e, p in zip(self.emas[k].parameters(), m.parameters()):
                e.mul_(a).add_(p.detach(), alpha=1 - a)

    def on_epoch_end(self, epoch):
        return {"elr_weight": sigmoid_rampup(self.steps, self.config.coef_step)}

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        for m in self.emas.values():  # the code keeps them in train mode while training
            m.train(mode)

    # -- the step ---------------------------------------------------------------------------
    def _loss(self, a: int, net, partner_ema, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss of network ``a``, its logits on the clean batch's mixed input).

        W > 1: the mixup partners come from the whole global batch (its inputs and targets
        all-gathered; λ and π drawn alike on every rank), this rank mixes its own rows, and
        the targets of the global batch are written into every replica here."""
        c = self.config
        x, y, idx = batch.x, batch.labels, batch.index
        sh = current_step()
        onehot = F.one_hot(y, self.ctx.num_classes).float()
        if c.alpha > 0:
            lam = beta_lam(self._alpha, x.device)
            perm = torch.randperm(batch_len(batch), device=x.device)
            mine = local_part(perm)  # the partners of this rank's rows (global positions)
            xg, yg = gather_batch(x), gather_batch(onehot)
            x_mix = x * lam + xg[mine] * (1 - lam)
            y_mix = onehot * lam + yg[mine] * (1 - lam)
        else:
            lam, mine, x_mix, y_mix = None, None, x, onehot
        logits = net(x_mix)
        with torch.no_grad():
            p_ema = partner_ema(x).float().softmax(1)
            t = elr_target_update(self.targets[a, idx], p_ema, c.beta)
            self.targets[a, idx] = t
            tg = gather_batch(t)  # the global batch's targets (t in one process)
            if sh is not None:  # every rank's new target rows into this replica
                self.targets[a, batch.global_index] = tg
            q = t if lam is None else t * lam + tg[mine] * (1 - lam)
        if self.weight_labels:
            y_mix = y_mix * q
            y_mix = y_mix / y_mix.sum(1, keepdim=True)
        ce = batch_mean(-(y_mix * logits.float().log_softmax(1)).sum(1))
        w = sigmoid_rampup(self.steps + 1, c.coef_step)
        reg = elr_regularizer(q, clamped_softmax(logits))
        return ce + w * c.lam * reg, logits

    def training_step(self, batch, epoch):
        n1, n2 = self.models["net1"], self.models["net2"]
        loss1, logits1 = self._loss(0, n1, self.emas["net2"], batch)
        loss2, _ = self._loss(1, n2, self.emas["net1"], batch)
        t = self.targets[0, batch.index]
        y = batch.labels
        return StepOutput(
            loss=loss1 + loss2,
            logits=logits1,
            selected=t.argmax(1) == y,
            score=t.gather(1, y[:, None])[:, 0],
        )

    # -- evaluation and state ---------------------------------------------------------------
    def eval_logits(self, x):
        z1, z2 = self.models["net1"](x), self.models["net2"](x)
        return {"ensemble": 0.5 * (z1 + z2), "net1": z1, "net2": z2}

    def state_dict(self) -> dict[str, Any]:
        s = super().state_dict()
        s["emas"] = {k: m.state_dict() for k, m in self.emas.items()}
        return s

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for k, m in self.emas.items():
            m.load_state_dict(state["emas"][k])
