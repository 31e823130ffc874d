"""The engine's ``--ema DECAY`` add-on for any method (:class:`WeightAverage`): an EMA of
every network, updated after each optimizer step, evaluated instead of the live weights and
checkpointed. (A method's own EMA evaluated beside its live network, as L2R and IEG keep, is
``methods.ema.ModelEMA``, updated in ``Method.after_step``.)
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..errors import ConfigError
from ..methods.base import Method


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
