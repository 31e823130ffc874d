"""``standard``: plain cross-entropy on the given labels (the seeds' "Default")."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import METHODS, Method, StepOutput, batch_mean, current_step
from .ema import NetEMA


@METHODS.register("standard")
class Standard(NetEMA, Method):
    """Plain cross-entropy on the given (noisy) labels (SELFIE's "Default", IEG's "supervised")."""

    name = "standard"
    baseline = True
    supports_mixup = True
    distributed = True

    @dataclass
    class Config:
        label_smoothing: float = 0.0  # ε of label smoothing (0: off, as the papers)
        ema_decay: float = 0.0  # EMA of the weights evaluated first (IEG's supervised: 0.999)

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.models = {"net": ctx.make_model()}
        self.init_ema(config.ema_decay)

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

    def state_dict(self):
        return {**super().state_dict(), **self.ema_state()}

    def load_state_dict(self, state):
        if "inner" in state:  # a checkpoint of the former EMA wrapper of IEG's supervised
            state = {**state["inner"], **{k: v for k, v in state.items() if k == "ema"}}
        super().load_state_dict(state)
        self.load_ema_state(state)
