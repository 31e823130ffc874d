"""Learning-rate schedules as pure functions of progress (no scheduler state to checkpoint)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import ConfigError


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
    first_decay_steps: int = 500,
    t_mul: float = 1.5,
    m_mul: float = 0.9,
    alpha: float = 0.0,
) -> float:
    """The learning rate at (0-based) ``epoch`` and ``step`` within it.

    ``step``: ``base_lr · decay^m`` with m = number of milestones (fractions of ``epochs``)
    reached; milestones are epoch boundaries (SELFIE decays at 50% and 75% of the epochs, by
    5). ``cosine``: half-cosine from ``base_lr`` to 0 over all steps. ``constant``: base_lr.
    ``cosine-restarts``: TensorFlow's ``cosine_decay_restarts`` (IEG's ``cosine``) over the
    global step ``epoch·steps_per_epoch + step``: the first cycle lasts ``first_decay_steps``
    steps (IEG's ``decay_steps``, 500), each next cycle ``t_mul`` (1.5) times longer and
    starting ``m_mul`` (0.9) times lower; ``alpha`` is the floor as a fraction of base_lr.
    """
    if kind == "constant":
        return base_lr
    if kind == "step":
        passed = sum(epoch >= round(m * epochs) for m in milestones)
        return base_lr * decay**passed
    if kind == "cosine":
        t = (epoch * steps_per_epoch + step) / max(1, epochs * steps_per_epoch)
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(t, 1.0)))
    if kind == "cosine-restarts":
        return cosine_decay_restarts(
            base_lr,
            epoch * steps_per_epoch + step,
            first_decay_steps,
            t_mul=t_mul,
            m_mul=m_mul,
            alpha=alpha,
        )
    raise ConfigError(
        f"unknown lr schedule {kind!r}; valid: step, cosine, cosine-restarts, constant"
    )


def cosine_decay_restarts(
    base_lr: float,
    global_step: int,
    first_decay_steps: int,
    *,
    t_mul: float = 2.0,
    m_mul: float = 1.0,
    alpha: float = 0.0,
) -> float:
    """``tf.train.cosine_decay_restarts`` (SGDR, Loshchilov & Hutter 2017) as a pure function.

    Cycle i (0-based) lasts ``first_decay_steps·t_mul^i`` steps and decays from
    ``base_lr·m_mul^i`` to ``alpha·base_lr`` along a half cosine; the defaults are TF's.
    """
    if first_decay_steps <= 0:
        raise ConfigError(f"first_decay_steps must be positive; got {first_decay_steps}")
    frac = global_step / first_decay_steps
    if t_mul == 1.0:
        i = math.floor(frac)
        frac -= i
    else:
        i = math.floor(math.log(1.0 - frac * (1.0 - t_mul)) / math.log(t_mul))
        done = (1.0 - t_mul**i) / (1.0 - t_mul)  # length of the finished cycles, in cycle 0 units
        frac = (frac - done) / t_mul**i
    cosine = 0.5 * m_mul**i * (1.0 + math.cos(math.pi * frac))
    return base_lr * ((1.0 - alpha) * cosine + alpha)
