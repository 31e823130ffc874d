"""An exponential moving average (EMA) of a network's weights that a method evaluates beside
the live network (``{"ema": ..., "net": ...}``, the EMA first): L2R, IEG and IEG's
``supervised`` baseline (``standard`` with ``ema_decay 0.999``).

TensorFlow semantics, as ``tf.train.ExponentialMovingAverage(0.999, global_step)`` in the IEG
code: after the n-th optimizer step (n = 1, 2, ...) every parameter's shadow moves as
``shadow ← d·shadow + (1 − d)·param`` with ``d = min(decay, (1 + n) / (10 + n))``, so the
average is usable early in a run. Only parameters are averaged; buffers (BatchNorm running
statistics) are copied from the live network, as TF evaluates the EMA variables with the live
moving statistics.

The engine calls ``Method.after_step()`` after every optimizer step; :class:`NetEMA` updates
the average there, so every step is averaged exactly once and the EMA is current whenever the
engine evaluates or saves. (The engine's own ``--ema`` add-on for any method, which evaluates
the average *instead* of the live networks, is ``engine.ema.WeightAverage``.)

The state (shadow weights, number of updates) is plain tensors and numbers, so it rides in the
method's ``state_dict`` and checkpoints load it with ``weights_only=True``. Under DDP the
parameters are identical on every rank after a step, so are the EMAs (distributed.md §2.8):
build the EMA from ``model.module`` after wrapping.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


class ModelEMA:
    """A shadow copy of ``model`` whose parameters are an EMA of ``model``'s.

    Args:
        model: the network to average (its current weights initialise the shadow).
        decay: the EMA decay (IEG: 0.999).
        warmup: use ``min(decay, (1 + n)/(10 + n))`` (TF's ``num_updates``) instead of
            ``decay`` from the first step.

    ``module`` is the averaged network, always in eval mode and without gradients.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, *, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"EMA decay must lie in [0, 1); got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.num_updates = 0

    def current_decay(self) -> float:
        """The decay the next update uses."""
        n = self.num_updates + 1
        return min(self.decay, (1.0 + n) / (10.0 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average ``model``'s parameters in (one optimizer step) and copy its buffers."""
        d = self.current_decay()
        shadow = list(self.module.parameters())
        live = [p.detach().to(s.dtype) for s, p in zip(shadow, model.parameters())]
        if shadow:
            torch._foreach_lerp_(shadow, live, 1.0 - d)  # one fused call, not one per tensor
        buffers = list(self.module.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(model.buffers()))
        self.num_updates += 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # older checkpoints also hold a "pending" flag (always False when saved): ignored
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])


class NetEMA:
    """Mixin for a method with ``models["net"]``: an optional :class:`ModelEMA` of it, updated
    in ``after_step`` and evaluated first. Call :meth:`init_ema` in ``__init__`` after building
    the network; put :meth:`ema_state` in ``state_dict`` and :meth:`load_ema_state` in
    ``load_state_dict``."""

    ema: ModelEMA | None = None

    def init_ema(self, decay: float) -> None:
        self.ema = ModelEMA(self.models["net"], decay) if decay else None

    def after_step(self) -> None:
        if self.ema is not None:
            self.ema.update(self.models["net"])

    def eval_logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().eval_logits(x)
        return {"ema": self.ema(x), **out} if self.ema is not None else out

    def ema_state(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def load_ema_state(self, state: dict[str, Any]) -> None:
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
