"""``standard``: plain cross-entropy on the given labels (the seeds' "Default")."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import METHODS, Method, StepOutput


@METHODS.register("standard")
class Standard(Method):
    """Plain cross-entropy on the given (noisy) labels (SELFIE's "Default", IEG's "supervised")."""

    name = "standard"

    @dataclass
    class Config:
        label_smoothing: float = 0.0  # ε of label smoothing (0: off, as the papers)

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.models = {"net": ctx.make_model()}

    def training_step(self, batch, epoch):
        logits = self.models["net"](batch.x)
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=self.config.label_smoothing)
        return StepOutput(loss=loss, logits=logits)
