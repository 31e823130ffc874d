"""Exponential moving average (EMA) of a network's weights, used for evaluation (IEG, L2R and
IEG's ``supervised`` baseline), and the engine's ``--ema`` add-on for any method
(:class:`WeightAverage`, at the end of this file).

TensorFlow semantics, as ``tf.train.ExponentialMovingAverage(0.999, global_step)`` in the IEG
code: after the n-th optimizer step (n = 1, 2, ...) every parameter's shadow moves as
``shadow ← d·shadow + (1 − d)·param`` with ``d = min(decay, (1 + n) / (10 + n))``, so the
average is usable early in a run. Only parameters are averaged; buffers (BatchNorm running
statistics) are copied from the live network, as TF evaluates the EMA variables with the live
moving statistics.

The engine owns the optimizer step and has no post-step hook, so a method updates its EMA
*lazily*: it calls :meth:`ModelEMA.catch_up` at the start of each ``training_step`` (and in
``on_epoch_end``, before evaluation and the checkpoint), and :meth:`ModelEMA.mark_step` at the
end of each ``training_step``. ``catch_up`` applies the one pending update, so every optimizer
step is averaged exactly once and the EMA is current whenever the engine evaluates or saves.

The state (shadow weights, number of updates, pending flag) is plain tensors and numbers, so it
rides in the method's ``state_dict`` and checkpoints load it with ``weights_only=True``. Under
DDP the parameters are identical on every rank after a step, so are the EMAs (distributed.md
§2.8): build the EMA from ``model.module`` after wrapping.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..methods.base import Method, StepOutput


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
        self.pending = False

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
        self.pending = False

    def mark_step(self) -> None:
        """Note that an optimizer step on the live network follows (update it lazily)."""
        self.pending = True

    def catch_up(self, model: nn.Module) -> None:
        """Apply the pending update, if any (see the module docstring)."""
        if self.pending:
            self.update(model)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def state_dict(self) -> dict[str, Any]:
        return {
            "module": self.module.state_dict(),
            "num_updates": self.num_updates,
            "pending": self.pending,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
        self.pending = bool(state["pending"])


class EMAMethod(Method):
    """Any method plus an EMA of its main network, evaluated first (``{"ema": ..., ...}``).

    IEG's ``supervised`` baseline is ``EMAMethod(standard)`` with the cosine-restart schedule
    (a preset of ``noisyfit ieg``, not a method of its own). Everything else is delegated to
    the wrapped method; the engine's optimizer covers the wrapped method's networks only.
    """

    def __init__(self, inner: Method, decay: float = 0.999):
        super().__init__(inner.config, inner.ctx)
        self.inner = inner
        self.name = inner.name
        self.needs_probe = inner.needs_probe
        self.models = inner.models
        self.ema = ModelEMA(inner.main_model, decay)

    @property
    def optimizer(self):  # the engine sets it on the wrapper; the inner method may need it
        return self.inner.optimizer

    @optimizer.setter
    def optimizer(self, opt) -> None:
        if hasattr(self, "inner"):
            self.inner.optimizer = opt

    def training_step(self, batch, epoch) -> StepOutput:
        self.ema.catch_up(self.inner.main_model)
        out = self.inner.training_step(batch, epoch)
        self.ema.mark_step()
        return out

    def prepare(self) -> None:
        self.inner.prepare()

    def on_epoch_start(self, epoch: int) -> None:
        self.inner.on_epoch_start(epoch)

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        self.ema.catch_up(self.inner.main_model)
        return self.inner.on_epoch_end(epoch)

    def schedule_epoch(self, epoch: int, epochs: int) -> tuple[int, int]:
        return self.inner.schedule_epoch(epoch, epochs)

    def eval_logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ema": self.ema(x), **self.inner.eval_logits(x)}

    def train(self, mode: bool = True) -> None:
        self.inner.train(mode)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        self.ema.load_state_dict(state["ema"])


class WeightAverage:
    """The engine's ``--ema DECAY`` add-on: an EMA of every network of any method.

    One :class:`torch.optim.swa_utils.AveragedModel` per entry of ``method.models``, with the
    EMA average ``w̄ ← d·w̄ + (1 − d)·w`` (``get_ema_multi_avg_fn``; the first update copies)
    over parameters and buffers (BatchNorm statistics), updated by the engine after every
    optimizer step. :meth:`swapped` puts the averaged networks in place of the live ones, so the
    method's own ``eval_logits`` (an ensemble, say) is evaluated on the averaged weights. The
    state rides in the checkpoint (``state["ema"]``), so a resumed run continues it exactly.
    """

    def __init__(self, method: Method, decay: float):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        if not 0.0 < decay < 1.0:
            raise ConfigError(f"--ema: the decay must lie in (0, 1), e.g. 0.999; got {decay}")
        self.method = method
        self.decay = float(decay)
        self.averaged = {
            k: AveragedModel(m, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
            for k, m in method.models.items()
        }
        for a in self.averaged.values():
            a.requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        """Average the live networks in (call after each optimizer step)."""
        for k, m in self.method.models.items():
            self.averaged[k].update_parameters(m)

    @contextlib.contextmanager
    def swapped(self):
        """Within the block, ``method.models`` holds the averaged networks."""
        live = self.method.models
        self.method.models = {k: a.module for k, a in self.averaged.items()}
        try:
            yield
        finally:
            self.method.models = live

    def state_dict(self) -> dict[str, Any]:
        return {k: a.state_dict() for k, a in self.averaged.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, a in self.averaged.items():
            a.load_state_dict(state[k])
