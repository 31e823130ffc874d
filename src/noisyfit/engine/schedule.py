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
    decay_start: int = 80,
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
    ``linear-decay``: the official Co-teaching plan (bhanML/Co-teaching main.py,
    ``alpha_plan``): constant, then from ``decay_start`` a linear decay to 0; see
    :func:`linear_decay_plan`.
    """
    if kind == "constant":
        return base_lr
    if kind == "linear-decay":
        return base_lr * linear_decay_plan(epoch, epochs, decay_start)
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
        f"unknown lr schedule {kind!r}; valid: step, cosine, cosine-restarts, constant, "
        "linear-decay"
    )


def linear_decay_plan(epoch: int, epochs: int, decay_start: int) -> float:
    """The factor of the official Co-teaching plan for the 0-based engine ``epoch``.

    The official loop trains plan indices i = 1 … n_epoch − 1 (``for epoch in range(1,
    args.n_epoch)``, index 0 is the evaluation of the random weights), so the engine's epoch e
    is i = e + 1 of a plan of n = ``epochs`` + 1 entries (the official 200 are 199 epochs
    here): factor 1 for i < ``decay_start``, else (n − i)/(n − decay_start).
    """
    i, n = epoch + 1, epochs + 1
    if i < decay_start or n <= decay_start:
        return 1.0
    return (n - i) / (n - decay_start)


def adam_beta1(kind: str, epoch: int, decay_start: int, beta1: float, after: float | None):
    """β1 of Adam at the 0-based ``epoch``: ``after`` (the official Co-teaching ``mom2`` 0.1)
    from the decay start of the ``linear-decay`` schedule, else ``beta1``."""
    if kind == "linear-decay" and after is not None and epoch + 1 >= decay_start:
        return after
    return beta1


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
