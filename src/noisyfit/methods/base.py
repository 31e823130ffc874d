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
  * ``after_step()``: called by the engine after every optimizer step (an EMA of the weights,
    as L2R/IEG/ELR+ keep, is updated here).
  * ``self.optimizer``: the engine's optimizer, set once before training (IEG's and L2R's
    look-ahead step reads its momentum buffers and weight decay inside ``training_step``).
  * ``needs``: what the method needs of the run, a subset of :data:`NEEDS` (``"probe"``: a
    clean probe loader as ``ctx.probe``; ``"subsets"``: a loader that trains and predicts on
    parts of the data; ``"noise_rate"``: τ as ``ctx.noise_rate``; ``"in_memory"``: raw inputs
    held whole). :func:`check_needs` refuses an impossible run before anything is written.

Class attributes shared code reads instead of naming methods: ``collapse_hint`` (added to the
engine's collapse warning), ``short_run_options`` (the demo's short-run defaults), ``baseline``
(the plain method robust ones are compared with), ``stage_files``/``stage_note`` (stages saved
before the first epoch, for the resume message).

Add-ons the engine runs for any method (``TrainConfig.ema``, ``TrainConfig.mixup``):
  * ``--ema DECAY``: the engine keeps an EMA of every network in ``self.models`` and evaluates
    (and checkpoints) it; nothing to do in the method.
  * ``--mixup ALPHA``: only for methods with ``supports_mixup = True``. The engine mixes
    ``batch.x`` before the step and sets ``self.mix`` (a :class:`Mix`); the method computes its
    loss against the mixed targets with ``self.mix.ce(logits, labels)`` (and ``mix.targets`` for
    per-sample target tensors). Other methods refuse the option with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import to_dataclass
from ..data.loader import Batch, Loader
from ..distributed import all_gather_rows, all_reduce_sum, current_step, rank
from ..errors import ConfigError  # noqa: F401  (methods import it from here)
from ..registry import Registry

METHODS = Registry("method", builtin="noisyfit.methods._builtin")


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
    loader: Loader | None = None
    probe: Loader | None = None
    seed: int = 0
    train_model: Callable[..., nn.Module] | None = None
    predict: Callable[..., torch.Tensor] | None = None
    stage_state: Callable[[str], dict] | None = None
    config: Any = None
    extra: dict = field(default_factory=dict)
    val: Loader | None = None


#: What a method may declare in ``Method.needs``.
NEEDS = frozenset({"probe", "subsets", "noise_rate", "in_memory"})


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
    #: what the run must provide (a subset of :data:`NEEDS`; see :func:`check_needs`)
    needs: ClassVar[frozenset[str]] = frozenset()
    #: derived from ``needs`` (read-only views kept for callers that ask for one need)
    needs_probe: ClassVar[bool] = False
    needs_noise_rate: ClassVar[bool] = False
    #: the method's loss accepts mixed inputs and targets (the engine's ``--mixup``)
    supports_mixup: ClassVar[bool] = False
    #: a sentence the engine adds to its collapse warning (how to train this method stably)
    collapse_hint: ClassVar[str] = ""
    #: options scaled to a short run (``noisyfit demo``): ``{epochs}``, ``{half}``,
    #: ``{quarter}`` and ``{twentieth}`` are replaced by that share of the run's epochs
    short_run_options: ClassVar[dict[str, str]] = {}
    #: the plain baseline the robust methods are compared with (``standard``)
    baseline: ClassVar[bool] = False
    #: files in the run folder where the method saves stages that run before the first epoch
    #: (``prepare``), so a run stopped there resumes from them (INCV's selection)
    stage_files: ClassVar[tuple[str, ...]] = ()
    #: what such a file resumes, for the Ctrl-C message
    stage_note: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        legacy = {n for n, f in (("probe", "needs_probe"), ("noise_rate", "needs_noise_rate"))
                  if own.get(f) is True}  # fmt: skip
        cls.needs = frozenset(cls.needs) | legacy
        unknown = sorted(cls.needs - NEEDS)
        if unknown:
            raise TypeError(
                f"{cls.__name__}.needs: unknown need(s) {', '.join(unknown)}; valid: "
                f"{', '.join(sorted(NEEDS))}"
            )
        cls.needs_probe = "probe" in cls.needs
        cls.needs_noise_rate = "noise_rate" in cls.needs

    #: the step is exact under torchrun with W > 1 processes (global-batch losses and
    #: selection via the helpers at the end of this file, per-sample state written only at
    #: ``batch.index``); the engine refuses W > 1 for the others (engine.ddp). Declared on
    #: the class itself: a subclass is refused until it declares it again
    distributed: ClassVar[bool] = False

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

    def after_step(self) -> None:
        """Called by the engine after each optimizer step (weights already updated): EMAs of
        the weights are updated here. Must not read values back to the host."""

    def epoch_loader(self, loader: Loader) -> Loader:
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
    """Build ``cls.Config`` from ``options`` (CLI strings or YAML values) through the one
    converter, :func:`noisyfit.config.to_dataclass`.

    Raises:
        ConfigError: for an unknown option (listing the valid ones) or a value of the wrong type.
    """
    return to_dataclass(
        cls.Config, dict(options or {}), label="option", owner=f"method {cls.name!r}"
    )


_NEED_FIX = {
    "probe": "pass --probe-per-class 10 (or --probe-ratio, --probe-file)",
    "subsets": "use a dataset that loads into memory (a DeviceLoader) or another method",
    "noise_rate": "pass --tau RATE (the loader cannot run the estimate)",
    "in_memory": "use a dataset that loads into memory (a DeviceLoader) or another method",
}


def missing_needs(
    method_cls: type[Method], cfg: Any, loader: Any, probe: Any, *, noise_rate=None
) -> list[str]:
    """The entries of ``method_cls.needs`` this run cannot provide (see :func:`check_needs`)."""
    subsets = bool(getattr(loader, "supports_subsets", False))
    have = {
        "probe": probe is not None and probe is not False,
        "subsets": subsets,
        "in_memory": bool(getattr(loader, "in_memory", False)),
        # a float --tau, the injected noise's rate, or an estimate on subsets
        "noise_rate": isinstance(getattr(cfg, "tau", None), float)
        or noise_rate is not None
        or subsets,
    }
    return [n for n in sorted(method_cls.needs) if not have[n]]


def check_needs(
    method_cls: type[Method], cfg: Any, loader: Any, probe: Any, *, noise_rate=None
) -> None:
    """Raise ConfigError if the run cannot give ``method_cls`` what its ``needs`` declares.

    Args:
        method_cls: the method's class.
        cfg: the run's TrainConfig (``tau``: a float gives the noise rate).
        loader: the training loader, or its class (capabilities are class attributes:
            ``supports_subsets``, ``in_memory``; see :class:`~noisyfit.data.loader.Loader`).
        probe: the probe loader, or True/False/None for whether the run will have one.
        noise_rate: τ known without an estimate (the injected noise's rate), or None.
    """
    missing = missing_needs(method_cls, cfg, loader, probe, noise_rate=noise_rate)
    if missing:
        name = method_cls.name or method_cls.__name__
        kind = loader.__name__ if isinstance(loader, type) else type(loader).__name__
        what = {
            "probe": "a clean probe set",
            "subsets": f"a loader that can train and predict on subsets ({kind} cannot)",
            "noise_rate": f"a noise rate τ ({kind} cannot estimate one on subsets)",
            "in_memory": f"the raw inputs held in memory ({kind} decodes per batch)",
        }
        n = missing[0]
        raise ConfigError(f"method {name!r} needs {what[n]}: {_NEED_FIX[n]}")


def baseline_method() -> str:
    """The registered name of the plain baseline (the class with ``baseline = True``): what
    bench's clean-data oracle trains and its cost columns compare with."""
    return next(n for n in METHODS.names() if METHODS.get(n).baseline)


def build_method(name: str, ctx: Context, options: dict[str, Any] | None = None) -> Method:
    """Build the registered method ``name`` with ``options`` for context ``ctx``."""
    cls = METHODS.get(name)
    return cls(method_config(cls, options), ctx)


# --------------------------------------------------------------------------------------------
# shared rules


def small_loss_mask(loss: torch.Tensor, num_keep: int | torch.Tensor) -> torch.Tensor:
    """(b,) bool mask of the ``num_keep`` smallest entries of ``loss`` (b,), on the device.

    The one small-loss selection used by Co-teaching, SELFIE's clean set and INCV; ties are
    broken by position (``torch.topk`` on the negated loss is deterministic on CPU). In a
    multi-process step the losses of the global batch are all-gathered, the ``num_keep``
    (of the global batch) smallest selected, and this rank's part returned.
    """
    sh = current_step()
    if sh is not None:
        return _small_loss_mask(_gathered(loss.detach(), sh), num_keep)[sh.part]
    return _small_loss_mask(loss, num_keep)


def _small_loss_mask(loss: torch.Tensor, num_keep: int | torch.Tensor) -> torch.Tensor:
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
    device value needs no host sync (INCV, Co-teaching+). In a multi-process step the ranking
    is over the global batch (``num_keep`` counts the global batch) and this rank's part is
    returned."""
    masked = loss.detach().float().masked_fill(~eligible, float("inf"))
    sh = current_step()
    if sh is not None:
        both = _gathered(torch.stack([masked, eligible.float()], 1), sh)
        masked, elig = both[:, 0], both[:, 1] > 0
        return _keep_smallest(masked, elig, num_keep)[sh.part]
    return _keep_smallest(masked, eligible, num_keep)


def _keep_smallest(masked: torch.Tensor, eligible: torch.Tensor, num_keep) -> torch.Tensor:
    rank = torch.empty_like(masked, dtype=torch.long)
    rank[masked.argsort(stable=True)] = torch.arange(len(masked), device=masked.device)
    return eligible & (rank < num_keep)


# --------------------------------------------------------------------------------------------
# multi-process steps (torchrun, W > 1): the batch is this rank's share of the global batch.
# The engine back-propagates W × the returned loss (DDP averages gradients over ranks), so a
# method's loss must be its share of the global loss: Σ over its rows / a global count. These
# helpers are the 1-process expressions when W = 1 (or outside a training step).


def batch_len(batch: Batch) -> int:
    """Samples in the (global) batch: ``len(batch)`` in one process."""
    sh = current_step()
    return len(batch) if sh is None else sh.global_size


def batch_mean(v: torch.Tensor) -> torch.Tensor:
    """Mean of per-sample ``v`` (b,) over the global batch (this rank's share: Σv / n);
    ``v.mean()`` in one process."""
    sh = current_step()
    return v.mean() if sh is None else v.sum() / max(1, sh.global_size)


def batch_ce(logits: torch.Tensor, labels: torch.Tensor, **kw: Any) -> torch.Tensor:
    """Mean cross-entropy over the (global) batch: ``F.cross_entropy(logits, labels, **kw)`` in
    one process, this rank's share Σ CE / n with W > 1."""
    if current_step() is None:
        return F.cross_entropy(logits, labels, **kw)
    return batch_mean(F.cross_entropy(logits, labels, reduction="none", **kw))


def global_sum(t: torch.Tensor) -> torch.Tensor:
    """Σ of ``t`` over ranks in a multi-process step (an all-reduce, no gradient); ``t`` else."""
    return t if current_step() is None else all_reduce_sum(t)


def global_batch_sum(t: torch.Tensor) -> torch.Tensor:
    """Σ over the global batch of this rank's per-sample rows ``t`` (b, ...) → (...): the
    value is the global sum (an all-reduce), the gradient flows through this rank's rows only
    (``s + (allreduce(s) − s).detach()``), so a nonlinear function of a batch statistic
    (SOP+'s class balance, DivideMix's prior) gets its exact gradient summed over ranks.
    ``t.sum(0)`` in one process."""
    s = t.sum(0)
    return s if current_step() is None else s + (all_reduce_sum(s.detach()) - s).detach()


def global_term(term: torch.Tensor) -> torch.Tensor:
    """A loss term of global-batch statistics built with :func:`global_batch_sum` (its
    gradient reaches the weights through this rank's rows only): this rank's value share
    b_r/n, so the logged losses of the ranks add up to the term; the gradient is unchanged.
    ``term`` in one process."""
    sh = current_step()
    if sh is None:
        return term
    return term - term.detach() * (1 - sh.sizes[rank()] / max(1, sh.global_size))


def replicated_term(term: torch.Tensor) -> torch.Tensor:
    """A loss term every rank computes identically (e.g. a weight-decay term on the replicated
    weights): this rank's share b_r/n of value and gradient, so the ranks' gradients add up to
    the term's. ``term`` in one process."""
    sh = current_step()
    return term if sh is None else term * (sh.sizes[rank()] / max(1, sh.global_size))


def gather_batch(t: torch.Tensor) -> torch.Tensor:
    """(n, ...) the global batch's rows of per-sample ``t`` (b, ...) in the 1-process order
    (an all-gather, no gradient); ``t`` in one process. Slice back with :func:`local_part`."""
    sh = current_step()
    return t if sh is None else _gathered(t.detach(), sh)


def local_part(t: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global-batch tensor (n, ...); ``t`` in one process."""
    sh = current_step()
    return t if sh is None else t[sh.part]


def _gathered(t: torch.Tensor, sh) -> torch.Tensor:
    if t.shape[0] != sh.sizes[rank()]:
        raise RuntimeError(
            f"a multi-process selection needs one row per sample of the rank's batch "
            f"({sh.sizes[rank()]}); got {t.shape[0]}"
        )
    return all_gather_rows(t, sh.sizes)
