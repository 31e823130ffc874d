"""``f-correction``: loss correction (Patrini, Rozza, Menon, Nock, Qu, CVPR 2017),
``giorgiop/loss-correction``.

1. Train a network with plain cross-entropy on the noisy labels (``prepare()``;
   ``estimate_epochs`` epochs) and keep the epoch of the lowest cross-entropy on a *noisy*
   validation split (the official ``ModelCheckpoint(monitor='val_loss', save_best_only=True)``
   then ``load_model``, models.py:97-98,133, with ``validation_split=0.1``, experiment.py:36):
   the run's split (``--val-ratio``/``ctx.val``) when it has one, else ``holdout`` (10 %) of
   the training samples, stratified on the given labels, held out of this network only.
   ``stage1="last"`` keeps the last epoch instead (the behaviour before; on a network that
   memorizes the noisy labels T̂ then tends to the identity).
2. Estimate T̂ from its softmax p̂ over the training inputs (and the run's validation split:
   the original predicts on all of ``X_train``): for each class i the anchor
   ("perfect example") x̄_i = argmax_x p̂(ỹ = i | x) among the points *below* the
   ``percentile``-th percentile (97, ``interpolation='higher'``) of p̂(ỹ = i | ·) — the
   original's outlier filter; ``percentile=100`` is the plain argmax (its CIFAR-100 setting);
   row i of T̂ = p̂(ỹ | x̄_i), rows normalised.
3. Train a fresh network (the engine's run) with the corrected loss; p̂ is re-normalised and
   clipped to [ϵ, 1 − ϵ] (ϵ = 1e-7, Keras' epsilon) as the original:

   * forward:  ℓ = −log( (p̂ᵀ T̂)_ỹ ) = −log Σ_i p̂_i T̂_iỹ;
   * backward: ℓ = −(e_ỹᵀ T̂⁻¹) · log p̂.

A known T can be given instead (``t_file``: a (K, K) ``.npy``/``.csv``/``.txt``, rows = true
class), which skips step 1-2. The T̂ used is saved as ``t_hat.npy`` in the run folder (the
report shows it beside the nominal and realized T).

Departures from the original code:

* The original zeroes the filtered entries through ``robust_eta = eta_corr[:, i]``, a NumPy
  *view*, so column i of the probabilities is zeroed in place and the rows estimated after it
  read those zeros; we filter a copy (every row sees the unmodified p̂).
* The first network is the run's model/optimizer/schedule and its epochs are
  ``estimate_epochs`` (None: the run's); T̂ is estimated without augmentation. The original's
  Keras ``validation_split`` takes the *last* 10 % of a seeded shuffle (the first 10 % with
  augmentation), not a class-stratified draw.
* The reported model: the run's selected epoch (best accuracy on the noisy validation split,
  ``selected_test_acc`` in ``summary.json``, when the run has ``--val-ratio``), where the
  original reloads the epoch of the lowest *corrected* validation loss; without a split the
  run reports the last epoch. The corrected network trains on all training samples when the
  run has no split (the original: on the 90 %).
* No ``cliptozero``/``alpha`` post-processing of T̂ (both off in the original experiments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..data.base import stratified_subset
from ..noise import matrix_from_file
from .base import METHODS, ConfigError, KeepBest, Method, StepOutput, batch_mean

EPS = 1e-7  # Keras' epsilon: the clip of p̂ before the log


def estimate_transition(pred_probs: torch.Tensor, percentile: float = 97.0) -> torch.Tensor:
    """T̂ from (N, K) probabilities by anchor points (see the module docstring).

    Returns:
        (K, K) row-normalised float tensor: row i = p̂(ỹ | x̄_i).
    """
    probs = pred_probs.float()
    k = probs.shape[1]
    rows = []
    for i in range(k):  # K iterations, not a loop over samples
        col = probs[:, i]
        if percentile < 100:
            thresh = torch.quantile(col, percentile / 100.0, interpolation="higher")
            col = torch.where(col >= thresh, torch.zeros_like(col), col)
        rows.append(probs[col.argmax()])
    t = torch.stack(rows)
    return t / t.sum(1, keepdim=True).clamp_min(1e-12)


def forward_corrected_loss(
    logits: torch.Tensor, labels: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """(b,) −log((p̂ᵀ T)_ỹ) with p̂ = softmax(logits) clipped to [ϵ, 1 − ϵ]."""
    p = logits.float().softmax(1).clamp(EPS, 1 - EPS)
    q = p @ t
    return -torch.log(q.gather(1, labels[:, None]).squeeze(1))


def backward_corrected_loss(
    logits: torch.Tensor, labels: torch.Tensor, t_inv: torch.Tensor
) -> torch.Tensor:
    """(b,) −(e_ỹᵀ T⁻¹)·log p̂ with p̂ = softmax(logits) clipped to [ϵ, 1 − ϵ]."""
    logp = torch.log(logits.float().softmax(1).clamp(EPS, 1 - EPS))
    return -(t_inv[labels] * logp).sum(1)


def load_transition(path: str, num_classes: int) -> np.ndarray:
    """A (K, K) row-stochastic matrix from ``.npy``/``.csv``/``.txt``."""
    return matrix_from_file(num_classes, path=path)


def train_best_val_loss(
    ctx, holdout: float, *, epochs: int | None = None, describe: str = ""
) -> tuple[torch.nn.Module, int, list[float]]:
    """Train a cross-entropy network; return the epoch of the lowest cross-entropy on the
    noisy validation split (ties: the earlier, as Keras' save-on-improvement), its 1-based
    number, and the validation loss of every epoch.

    The split is ``ctx.val`` when the run has one, else ``holdout`` of the training samples
    (stratified on the given labels, seeded by the run's seed), left out of this training.
    """
    mask = None
    val = ctx.val
    if val is None:
        given = ctx.loader.labels.cpu().numpy()
        hold = np.zeros(len(given), dtype=bool)
        hold[stratified_subset(given, max(1, round(holdout * len(given))), ctx.seed + 17)] = True
        mask = torch.as_tensor(~hold, device=ctx.device)
        val = torch.as_tensor(hold, device=ctx.device)
    keep = KeepBest(val, metric="loss")
    net = ctx.train_model(mask, epochs=epochs, describe=describe, keep_best=keep)
    return net, keep.best_epoch, keep.scores


@METHODS.register("f-correction")
class FCorrection(Method):
    """F-correction: forward (or backward) loss correction with T̂ from anchor points."""

    name = "f-correction"
    needs = frozenset({"subsets"})  # the T̂ estimate trains and predicts on a split
    distributed = True  # W > 1: stage 1 trains distributed, T̂ is estimated alike on every rank

    @dataclass
    class Config:
        correction: Literal["forward", "backward"] = "forward"  # loss correction direction
        t_file: str | None = None  # a known T (K×K .npy/.csv/.txt) instead of the estimate
        estimate_epochs: int | None = None  # epochs of the first (CE) run; None: the run's
        percentile: float = 97.0  # anchor filter: argmax below this percentile (100: off)
        stage1: Literal["best-val-loss", "last"] = "best-val-loss"  # which epoch T̂ comes from
        holdout: float = 0.1  # noisy validation share for stage 1 when the run has no split

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if not 0 < config.percentile <= 100:
            raise ConfigError("f-correction: percentile must lie in (0, 100]")
        if not 0 < config.holdout < 1:
            raise ConfigError("f-correction: holdout must lie in (0, 1), e.g. 0.1")
        self.models = {"net": ctx.make_model()}
        k = ctx.num_classes
        self.T = torch.eye(k, device=ctx.device)  # identity until prepare(): plain CE
        self.T_inv = torch.eye(k, device=ctx.device)
        self.state_names = ("T", "T_inv")
        self.stage1_epoch: int | None = None  # the epoch of the stage-1 network T̂ comes from
        if config.t_file is not None:
            self._set(torch.as_tensor(load_transition(config.t_file, k), dtype=torch.float32))

    def _set(self, t: torch.Tensor) -> None:
        self.T.copy_(t.to(self.T.device))
        try:
            self.T_inv.copy_(torch.linalg.inv(self.T.double()).float())
        except RuntimeError as e:  # singular T̂: backward correction impossible
            if self.config.correction == "backward":
                raise ConfigError(
                    f"f-correction: T̂ is singular, backward correction "
                    f"impossible ({e}); use correction=forward"
                ) from None
            self.T_inv.copy_(torch.linalg.pinv(self.T.double()).float())

    def prepare(self) -> None:
        if self.config.t_file is not None:
            return
        ctx = self.ctx
        if ctx.train_model is None or ctx.predict is None or ctx.loader is None:
            raise ConfigError(
                "f-correction needs ctx.train_model and ctx.predict to estimate T̂; give a "
                "known T with t_file, or run it through noisyfit.train"
            )
        describe = "F-correction stage 1 (CE) "
        if self.config.stage1 == "last":
            net = ctx.train_model(None, epochs=self.config.estimate_epochs, describe=describe)
            self.stage1_epoch = self.config.estimate_epochs or ctx.epochs
        else:
            net, self.stage1_epoch, _ = train_best_val_loss(
                ctx, self.config.holdout, epochs=self.config.estimate_epochs, describe=describe
            )
        probs = ctx.predict(net)
        if ctx.val is not None:  # the original predicts on all of X_train, its val part too
            probs = torch.cat([probs, ctx.predict(net, loader=ctx.val)])
        t = estimate_transition(probs, self.config.percentile)
        self._set(t)
        with np.printoptions(precision=3, suppress=True):
            print(
                f"F-correction: estimated T̂ (stage-1 epoch {self.stage1_epoch}) =\n"
                f"{t.cpu().numpy()}"
            )

    def state_dict(self) -> dict:
        # the stage-1 epoch too, so a resumed run keeps logging t_hat_stage1_epoch
        return {**super().state_dict(), "stage1_epoch": self.stage1_epoch}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.stage1_epoch = state.get("stage1_epoch")  # older checkpoints: None

    def artifacts(self) -> dict[str, np.ndarray]:
        return {"t_hat.npy": self.T.cpu().numpy()}

    def training_step(self, batch, epoch):
        logits = self.models["net"](batch.x)
        if self.config.correction == "forward":
            loss = forward_corrected_loss(logits, batch.labels, self.T)
        else:
            loss = backward_corrected_loss(logits, batch.labels, self.T_inv)
        return StepOutput(loss=batch_mean(loss), logits=logits)

    def on_epoch_end(self, epoch):
        out = {"t_hat_diag_mean": float(self.T.diagonal().mean())}
        if self.stage1_epoch is not None:
            out["t_hat_stage1_epoch"] = self.stage1_epoch
        return out
