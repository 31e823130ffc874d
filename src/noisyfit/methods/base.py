"""The Method contract: one class per method, one file per class.

A method owns its networks and its per-sample state; the engine (``engine.loop.fit``) owns the
loop, the optimizer, the schedule, AMP, evaluation, logging and checkpoints. Per step the engine
calls ``training_step(batch, epoch)`` and back-propagates the returned loss. A method never sees
the true labels: a :class:`~noisyfit.data.loader.Batch` carries ``index``, ``x`` and the given
``labels`` only. What a method selects, weights or relabels it *reports* in the
:class:`StepOutput`; the engine scores those reports against the truth, the same way for every
method.

Writing a method::

    @METHODS.register("my-method")
    class MyMethod(Method):
        '''One line that ``noisyfit list methods`` shows.'''

        @dataclass
        class Config:
            tau: float | None = None  # τ, noise rate (None: the run's estimate)

        def __init__(self, config, ctx):
            super().__init__(config, ctx)
            self.models = {"net": ctx.make_model()}
            self.history = torch.zeros(ctx.num_samples, dtype=torch.int32, device=ctx.device)
            self.state_names = ("history",)   # saved in checkpoints

        def training_step(self, batch, epoch):
            logits = self.models["net"](batch.x)
            ...
            return StepOutput(loss=..., logits=logits, selected=mask)

Escape hatches, for methods that are more than a per-batch loss:
  * ``prepare()``: called once before the first epoch; with ``ctx.train_model`` (trains a
    fresh network on a subset) multi-stage methods run their first stages here (INCV,
    F-correction's first run).
  * ``schedule_epoch(epoch, epochs)``: the position the learning-rate schedule sees
    (methods that restart training, as SELFIE).
  * ``on_epoch_start(epoch)`` / ``on_epoch_end(epoch) -> dict``: per-epoch state changes and
    extra scalars for ``metrics.jsonl``.
  * ``self.optimizer``: set by the engine before training, for meta steps that need it (IEG).
  * ``needs_probe``: the method receives a clean probe loader as ``ctx.probe``.

Add-ons the engine runs for any method (``TrainConfig.ema``, ``TrainConfig.mixup``):
  * ``--ema DECAY``: the engine keeps an EMA of every network in ``self.models`` and evaluates
    (and checkpoints) it; nothing to do in the method.
  * ``--mixup ALPHA``: only for methods with ``supports_mixup = True``. The engine mixes
    ``batch.x`` before the step and sets ``self.mix`` (a :class:`Mix`); the method computes its
    loss against the mixed targets with ``self.mix.ce(logits, labels)`` (and ``mix.targets`` for
    per-sample target tensors). Other methods refuse the option with a clear error.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..data.loader import Batch, DeviceLoader
from ..errors import ConfigError
from ..registry import Registry

METHODS = Registry("method")


@dataclass
class StepOutput:
    """What one ``training_step`` returns. Shapes: b = batch size, K = classes.

    Attributes:
        loss: scalar to back-propagate (already averaged as the method's rule says).
        logits: (b, K) of the main network on this batch (for training loss/error logs).
        selected: (b,) bool, the samples whose loss was used (None: all).
        weights: (b,) float per-sample loss weights (None: uniform).
        new_labels: (b,) int64 the labels the method trained on (None: the given labels);
            entries that differ from the given label count as relabelled.
        score: (b,) float, the method's per-sample cleanliness score (higher = more likely
            clean), written to ``samples.csv``.
    """

    loss: torch.Tensor
    logits: torch.Tensor | None = None
    selected: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    new_labels: torch.Tensor | None = None
    score: torch.Tensor | None = None


@dataclass
class Mix:
    """One mixup draw (Zhang et al., ICLR 2018) of a batch: ``x̃ = λ·x + (1 − λ)·x[perm]``.

    Attributes:
        lam: λ, a 0-d float tensor on the device (λ ~ Beta(α, α)).
        perm: (b,) int64 the partner of each sample in the batch.
    """

    lam: torch.Tensor
    perm: torch.Tensor

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """(b, ...) mixed inputs λ·x + (1 − λ)·x[perm]."""
        return x * self.lam + x[self.perm] * (1 - self.lam)

    def targets(self, t: torch.Tensor) -> torch.Tensor:
        """(b, ...) mixed per-sample tensors (one-hot or soft targets) λ·t + (1 − λ)·t[perm]."""
        return t * self.lam + t[self.perm] * (1 - self.lam)

    def ce(
        self, logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
    ) -> torch.Tensor:
        """(b,) cross-entropy of ``logits`` (b, K) against the mixed labels:
        λ·CE(logits, y) + (1 − λ)·CE(logits, y[perm]) (equal to CE against the mixed one-hot)."""
        kw = dict(reduction="none", label_smoothing=label_smoothing)
        ce_a = F.cross_entropy(logits.float(), labels, **kw)
        ce_b = F.cross_entropy(logits.float(), labels[self.perm], **kw)
        return ce_a * self.lam + ce_b * (1 - self.lam)


@dataclass
class Context:
    """What the engine gives a method when it is built.

    Attributes:
        num_classes: K.  num_samples: N (training set size; per-sample state is (N, ...)).
        input_shape: (C, H, W) or (D,).  epochs, batch_size: the run's schedule.
        device: where models and state live.  make_model: builds a fresh network.
        noise_rate: τ, the noise rate the method may assume (given or estimated), or None.
        loader: the training loader (given labels), for escape hatches.
        probe: a loader over a clean probe set, when the run has one.
        seed: the training seed.
        train_model: ``train_model(mask=None, *, epochs=None, init_state=None, labels=None,
            describe="", **config_changes) -> nn.Module`` trains a fresh network with plain
            cross-entropy on the training samples in ``mask`` (bool (N,)), with the run's
            optimizer and schedule unless changed; for multi-stage methods and estimates
            (``keep_best=KeepBest(...)``: the best validation epoch instead of the last).
        predict: ``predict(model, mask=None, *, loader=None) -> (n, K)`` softmax
            probabilities on the training samples in ``mask`` (or on ``loader``), in index
            order, always without augmentation and in eval mode.
        stage_state: ``stage_state(file name) -> {"saved_state", "save_state"}``: a resumable
            state file of a multi-stage method in the run folder (``{}`` without one).
        config: the run's TrainConfig.
        val: a loader over the noisy validation split (given labels, no augmentation, in
            order), when the run holds one out (``--val-ratio``/``--val-file``); methods that
            need a validation set (F-correction's estimate) use this one.
    """

    num_classes: int
    num_samples: int
    input_shape: tuple[int, ...]
    epochs: int
    batch_size: int
    device: torch.device
    make_model: Callable[[], nn.Module]
    noise_rate: float | None = None
    loader: DeviceLoader | None = None
    probe: DeviceLoader | None = None
    seed: int = 0
    train_model: Callable[..., nn.Module] | None = None
    predict: Callable[..., torch.Tensor] | None = None
    stage_state: Callable[[str], dict] | None = None
    config: Any = None
    extra: dict = field(default_factory=dict)
    val: DeviceLoader | None = None


@dataclass
class KeepBest:
    """Ask ``ctx.train_model`` for the best epoch instead of the last (``engine.subset``).

    Attributes:
        on: the validation samples: an (N,) bool mask over the training set (scored against
            the given labels), or a loader (scored against its own labels).
        metric: ``"acc"`` (top-1 agreement with the labels, higher is better: INCV's
            ``ModelCheckpoint(monitor='val_acc', save_best_only=True)``) or ``"loss"``
            (cross-entropy, lower is better: F-correction's stage 1). Ties keep the earlier
            epoch (Keras saves only on strict improvement).

    Filled in by the trainer: ``best_epoch`` (1-based), ``best`` (its score) and ``scores``
    (one per epoch).
    """

    on: Any
    metric: Literal["acc", "loss"] = "acc"
    best_epoch: int | None = None
    best: float | None = None
    scores: list[float] = field(default_factory=list)


class Method:
    """Base class of every method (see the module docstring for the contract)."""

    @dataclass
    class Config:
        """Options of the method; each field carries the paper's symbol and default."""

    name: ClassVar[str] = ""
    needs_probe: ClassVar[bool] = False
    needs_noise_rate: ClassVar[bool] = False
    #: the method's loss accepts mixed inputs and targets (the engine's ``--mixup``)
    supports_mixup: ClassVar[bool] = False

    def __init__(self, config: Any, ctx: Context):
        self.config = config
        self.ctx = ctx
        self.models: dict[str, nn.Module] = {}
        self.state_names: tuple[str, ...] = ()
        self.optimizer: torch.optim.Optimizer | None = None
        self.mix: Mix | None = None  # set by the engine before each step under --mixup

    # -- the step ---------------------------------------------------------------------------
    def training_step(self, batch: Batch, epoch: int) -> StepOutput:
        raise NotImplementedError

    # -- hooks ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Called once before training; multi-stage methods run their first stages here."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch (0-based)."""

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Called after each epoch; returns extra scalars to log."""
        return {}

    def epoch_loader(self, loader: DeviceLoader) -> DeviceLoader:
        """The loader the engine iterates each epoch, asked once after ``prepare()`` (and
        after a resume); methods that train on a subset return ``loader.subset(mask)`` (INCV's
        stage 2 runs over its selected set S). Default: the run's training loader."""
        return loader

    def artifacts(self) -> dict[str, Any]:
        """Arrays the run folder keeps after training, ``{file name: array}`` (saved with
        ``numpy.save``), e.g. F-correction's ``t_hat.npy``."""
        return {}

    def schedule_epoch(self, epoch: int, epochs: int) -> tuple[int, int]:
        """(epoch, epochs) the learning-rate schedule sees; methods that restart training
        (SELFIE) map the run's epoch into the current round."""
        return epoch, epochs

    # -- evaluation -------------------------------------------------------------------------
    @property
    def main_model(self) -> nn.Module:
        return next(iter(self.models.values()))

    def eval_logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of every network to evaluate; the first entry is the method's prediction."""
        return {name: m(x) for name, m in self.models.items()}

    # -- plumbing ---------------------------------------------------------------------------
    def parameters(self) -> Iterable[nn.Parameter]:
        for m in self.models.values():
            yield from m.parameters()

    def train(self, mode: bool = True) -> None:
        for m in self.models.values():
            m.train(mode)

    def eval(self) -> None:
        self.train(False)

    def state_dict(self) -> dict[str, Any]:
        """Per-sample state and counters (tensors and plain values) for checkpoints."""
        return {k: getattr(self, k) for k in self.state_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self.state_names:
            v = state[k]
            cur = getattr(self, k)
            if torch.is_tensor(cur):
                cur.copy_(v.to(cur.device))
            else:
                setattr(self, k, v)


# --------------------------------------------------------------------------------------------
# options


def method_config(cls: type[Method], options: dict[str, Any] | None = None) -> Any:
    """Build ``cls.Config`` from ``options`` (strings from the CLI are converted by type).

    Raises:
        ConfigError: for an unknown option (listing the valid ones) or a value of the wrong type.
    """
    options = dict(options or {})
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for method {cls.name!r}; valid: {valid}"
        )
    hints = typing.get_type_hints(cls.Config)
    values = {k: _coerce(v, hints[k], f"{cls.name}.{k}") for k, v in options.items()}
    return cls.Config(**values)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (often a CLI string) to type ``tp``; raise ConfigError if impossible."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: cannot read {value!r} as {tp}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        inner = args[0] if args else str
        return origin(_coerce(v, inner, where) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where}: {value!r} is not a boolean (true/false)")
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {value!r} is not a valid {tp.__name__}") from None
    return value


def build_method(name: str, ctx: Context, options: dict[str, Any] | None = None) -> Method:
    """Build the registered method ``name`` with ``options`` for context ``ctx``."""
    from . import _builtin  # noqa: F401  (registers the built-in methods)

    cls = METHODS.get(name)
    return cls(method_config(cls, options), ctx)


# --------------------------------------------------------------------------------------------
# shared rules


def small_loss_mask(loss: torch.Tensor, num_keep: int | torch.Tensor) -> torch.Tensor:
    """(b,) bool mask of the ``num_keep`` smallest entries of ``loss`` (b,), on the device.

    The one small-loss selection used by Co-teaching, SELFIE's clean set and INCV; ties are
    broken by position (``torch.topk`` on the negated loss is deterministic on CPU). Later a
    multi-process run all-gathers the losses first and selects over the global batch.
    """
    b = loss.shape[0]
    k = int(num_keep)
    k = max(0, min(b, k))
    mask = torch.zeros(b, dtype=torch.bool, device=loss.device)
    if k:
        mask[torch.topk(loss.detach(), k, largest=False, sorted=False).indices] = True
    return mask


def keep_smallest(
    loss: torch.Tensor, eligible: torch.Tensor, num_keep: torch.Tensor | int
) -> torch.Tensor:
    """(b,) bool: the ``num_keep`` (an int or a 0-dim tensor) smallest ``loss`` (b,) entries
    among the ``eligible`` (b,) bool ones; ties by position. Rank-based, so a count that is a
    device value needs no host sync (INCV, Co-teaching+)."""
    masked = loss.detach().float().masked_fill(~eligible, float("inf"))
    rank = torch.empty_like(masked, dtype=torch.long)
    rank[masked.argsort(stable=True)] = torch.arange(len(masked), device=loss.device)
    return eligible & (rank < num_keep)
