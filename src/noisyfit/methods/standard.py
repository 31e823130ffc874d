"""``standard``: plain cross-entropy on the given labels (the seeds' "Default")."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import METHODS, Method, StepOutput, batch_mean, current_step


@METHODS.register("standard")
class Standard(Method):
    """Plain cross-entropy on the given (noisy) labels (SELFIE's "Default", IEG's "supervised")."""

    name = "standard"
    supports_mixup = True
    distributed = True

    @dataclass
    class Config:
        label_smoothing: float = 0.0  # ε of label smoothing (0: off, as the papers)

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.models = {"net": ctx.make_model()}

    def training_step(self, batch, epoch):
        logits = self.models["net"](batch.x)
        eps = self.config.label_smoothing
        if self.mix is not None:  # --mixup: CE against the mixed labels
            loss = self.mix.ce(logits, batch.labels, label_smoothing=eps).mean()
        elif current_step() is None:
            loss = F.cross_entropy(logits, batch.labels, label_smoothing=eps)
        else:  # W > 1: this rank's share of the global batch's mean
            ce = F.cross_entropy(logits, batch.labels, label_smoothing=eps, reduction="none")
            loss = batch_mean(ce)
        return StepOutput(loss=loss, logits=logits)
