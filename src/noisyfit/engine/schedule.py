"""Learning-rate schedules as pure functions of progress (no scheduler state to checkpoint)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def learning_rate(
    kind: str,
    base_lr: float,
    epoch: int,
    step: int,
    steps_per_epoch: int,
    epochs: int,
    *,
    milestones: Sequence[float] = (0.5, 0.75),
    decay: float = 0.2,
) -> float:
    """The learning rate at (0-based) ``epoch`` and ``step`` within it.

    ``step``: ``base_lr · decay^m`` with m = number of milestones (fractions of ``epochs``)
    reached; milestones are epoch boundaries (SELFIE decays at 50% and 75% of the epochs, by
    5). ``cosine``: half-cosine from ``base_lr`` to 0 over all steps. ``constant``: base_lr.
    """
    if kind == "constant":
        return base_lr
    if kind == "step":
        passed = sum(epoch >= round(m * epochs) for m in milestones)
        return base_lr * decay**passed
    if kind == "cosine":
        t = (epoch * steps_per_epoch + step) / max(1, epochs * steps_per_epoch)
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(t, 1.0)))
    raise ValueError(f"unknown lr schedule {kind!r}; valid: step, cosine, constant")
