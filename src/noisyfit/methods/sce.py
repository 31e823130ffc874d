"""``sce``: symmetric cross-entropy (Wang et al., ICCV 2019).

One network, every sample: α·CE + β·RCE, the reverse cross-entropy of the one-hot label q
against the prediction p,

    RCE = −Σ_k p_k log q_k,   log 0 := A,   so   RCE = −A·(1 − p_y).

The paper writes A = −4; the official code (``YisenWang/symmetric_cross_entropy_for_noisy_
labels``, Keras, and its authors' PyTorch port) clamps the one-hot label to [1e-4, 1] and the
prediction to [1e-7, 1], i.e. A = log 1e-4 ≈ −9.21 — we follow the code (``log_zero``
changes it). Defaults α = 0.1, β = 1.0 are the paper's CIFAR-10 values (CIFAR-100: α = 6,
β = 0.1; MNIST: α = 0.01, β = 1).

Nothing is selected, weighted or relabelled (label precision = the clean fraction, recall 1);
``score`` is p_y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import METHODS, ConfigError, Method, StepOutput, batch_mean


def sce_loss(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float, beta: float, log_zero: float
) -> torch.Tensor:
    """(b,) per-sample α·CE + β·RCE of logits (b, K), labels (b,); ``log_zero`` = A < 0."""
    logits = logits.float()
    ce = F.cross_entropy(logits, labels, reduction="none")
    p = torch.softmax(logits, 1).clamp(1e-7, 1.0)
    one_hot = F.one_hot(labels, logits.shape[1]).float().clamp(math.exp(log_zero), 1.0)
    rce = -(p * one_hot.log()).sum(1)
    return alpha * ce + beta * rce


@METHODS.register("sce")
class SCE(Method):
    """Symmetric cross-entropy α·CE + β·reverse CE (ICCV 2019)."""

    name = "sce"
    distributed = True

    @dataclass
    class Config:
        alpha: float = 0.1
        """α, weight of cross-entropy (paper CIFAR-10 0.1, CIFAR-100 6.0)."""
        beta: float = 1.0
        """β, weight of the reverse cross-entropy (paper CIFAR-10 1.0, CIFAR-100 0.1)."""
        log_zero: float = math.log(1e-4)
        """A = log 0 in the RCE: the code's log 1e-4 ≈ −9.21 (the paper writes −4)."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if config.alpha < 0 or config.beta < 0 or config.log_zero >= 0:
            raise ConfigError(
                f"sce: need alpha ≥ 0, beta ≥ 0 and log_zero < 0; got alpha={config.alpha}, "
                f"beta={config.beta}, log_zero={config.log_zero}"
            )
        self.models = {"net": ctx.make_model()}

    def training_step(self, batch, epoch):
        c = self.config
        logits = self.models["net"](batch.x)
        per = sce_loss(logits, batch.labels, c.alpha, c.beta, c.log_zero)
        with torch.no_grad():
            p_y = torch.softmax(logits.float(), 1).gather(1, batch.labels[:, None]).squeeze(1)
        return StepOutput(loss=batch_mean(per), logits=logits, score=p_y)
