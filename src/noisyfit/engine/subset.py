"""Training a fresh network on a subset, predicting on a subset, keep-best: written once.

Methods reach these only through the Context the run builder gives them
(:func:`noisyfit.api.build_run`):

* ``ctx.train_model(mask=None, *, epochs=None, init_state=None, labels=None, describe="",
  keep_best=None, **config_changes) -> nn.Module`` (:func:`subset_trainer`): a fresh network
  trained with plain cross-entropy on the training samples of ``mask`` (N,) bool, with the
  run's optimizer and schedule unless changed, without the run's add-ons (``--ema``,
  ``--mixup``: those are for the method's own training). With ``keep_best`` (a
  :class:`~noisyfit.methods.base.KeepBest`) it returns the epoch that scored best on a
  validation set.
* ``ctx.predict(model, mask=None, *, loader=None) -> (n, K)`` (:func:`subset_predictor`):
  softmax probabilities of ``model`` on the training samples of ``mask`` (or on ``loader``),
  in index order, **always without augmentation and in eval mode**.

:func:`estimate_noise_rate` (``--tau auto``) is written on these two services.
"""

from __future__ import annotations

import copy

import torch

from ..analysis.noise_rate import rate_from_agreement
from ..methods.base import KeepBest
from ..methods.standard import Standard
from .evaluate import evaluate, predict_probs
from .loop import fit


def eval_view(loader, mask: torch.Tensor | None = None):
    """A view of ``loader`` over ``mask`` (N,) bool (None: all samples), in index order and
    without augmentation (the Loader protocol's ``eval_view``): what prediction runs on. The
    loader itself is not changed."""
    if mask is not None:
        loader = loader.subset(torch.as_tensor(mask, device=loader.device))
    return loader.eval_view()


def predict(model: torch.nn.Module, loader, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(n, K) float32 softmax probabilities of ``model`` (eval mode, no augmentation) on the
    samples of ``loader`` in ``mask`` (None: all), in index order."""
    return predict_probs(model, eval_view(loader, mask))


def subset_trainer(ctx):
    """The ``ctx.train_model`` service of a Context (see the module docstring)."""

    def train_model(
        mask=None,
        *,
        epochs=None,
        init_state=None,
        labels=None,
        describe="",
        keep_best: KeepBest | None = None,
        **changes,
    ) -> torch.nn.Module:
        cfg = ctx.config.replace(
            epochs=epochs or ctx.config.epochs, checkpoint=False, ema=0.0, mixup=0.0, **changes
        )  # the run's add-ons (--ema, --mixup) are for the method's own training only
        loader = ctx.loader if labels is None else ctx.loader.with_labels(labels)
        if mask is not None:
            loader = loader.subset(torch.as_tensor(mask, device=ctx.device))
        net = Standard(Standard.Config(), ctx) if keep_best is None else _KeepBest(ctx, keep_best)
        if init_state is not None:
            net.models["net"].load_state_dict(init_state)
        fit(net, loader, None, cfg, describe=describe)
        if keep_best is not None and net.best_state is not None:
            net.models["net"].load_state_dict(net.best_state)
        return net.models["net"]

    return train_model


def subset_predictor(ctx):
    """The ``ctx.predict`` service: ``predict(model, mask=None, *, loader=None) -> (n, K)``
    probabilities on the training samples of ``mask`` (or on all of ``loader``), un-augmented,
    eval mode, in index order."""

    def predict_on(model, mask=None, *, loader=None) -> torch.Tensor:
        return predict(model, ctx.loader if loader is None else loader, mask)

    return predict_on


class _KeepBest(Standard):
    """A Standard network that scores itself on a validation set after every epoch and keeps
    the best weights (on the device)."""

    distributed = True  # W > 1: scored alike on every rank (evaluate all-reduces)

    def __init__(self, ctx, keep: KeepBest):
        super().__init__(Standard.Config(), ctx)
        self.keep = keep
        on = keep.on
        if hasattr(on, "epoch"):  # a loader: scored against its own labels
            self.val, self.val_labels = on, on.labels
        else:  # a mask over the training set: the given labels
            self.val = eval_view(ctx.loader, torch.as_tensor(on, device=ctx.device))
            self.val_labels = ctx.loader.labels[self.val.indices]
        self.best_state: dict | None = None

    def on_epoch_end(self, epoch):
        keep = self.keep
        if keep.metric == "loss":
            score = next(iter(evaluate(self, self.val).values()))["loss"]
            better = keep.best is None or score < keep.best
        else:
            probs = predict_probs(self.models["net"], self.val)
            score = float((probs.argmax(1) == self.val_labels).float().mean())
            better = keep.best is None or score > keep.best
        keep.scores.append(score)
        if better:
            keep.best, keep.best_epoch = score, epoch + 1
            self.best_state = copy.deepcopy(self.models["net"].state_dict())
        return {f"val_{keep.metric}_noisy": score}


def estimate_noise_rate(
    ctx, *, kind: str = "symmetric", epochs: int | None = None, seed: int = 0
) -> dict:
    """τ̂ by 2-fold noisy cross-validation (INCV's first iteration), on ``ctx.train_model``
    and ``ctx.predict``.

    Splits the training set in two seeded halves, trains a fresh network on each half (the
    run's optimizer and schedule, ``epochs`` epochs), predicts the other half (un-augmented,
    eval mode), and inverts the agreement with the given labels through the ``kind`` family
    (:func:`noisyfit.analysis.noise_rate.rate_from_agreement`).

    Returns:
        {"tau": ε̂, "agreement": measured agreement, "kind": kind, "epochs": epochs}
    """
    n = ctx.num_samples
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    half = torch.zeros(n, dtype=torch.bool)
    half[perm[: n // 2]] = True
    labels = ctx.loader.labels
    agree = 0
    for k, mask in enumerate((half, ~half)):
        net = ctx.train_model(mask, epochs=epochs, describe=f"τ-estimate fold {k + 1}/2 ")
        other = (~mask).to(ctx.device)
        pred = ctx.predict(net, other).argmax(1)
        agree += int((pred == labels[other]).sum())
    a = agree / n
    return {
        "tau": rate_from_agreement(a, ctx.num_classes, kind),
        "agreement": a,
        "kind": kind,
        "epochs": epochs or ctx.epochs,
    }
