"""``selfie``: SELFIE (Song, Kim, Lee, ICML 2019), faithful to the official code.

Per mini-batch of size b the network trains on two sets (paper Eq. 2):

* **C**, the clean set: the ⌈(1 − τ)·b⌉ samples with the smallest cross-entropy against their
  given label ỹ (τ = noise rate);
* **R**, the refurbishable set: samples whose last q predicted labels agree, i.e. whose
  normalized entropy F(x; q) = −(1/log K)·Σ_y P(y|x; q)·log P(y|x; q) ≤ ε, with P(y|x; q)
  the share of class y in the history; their label is refurbished to argmax_y P(y|x; q);

    loss = 1/|R ∪ C| · ( Σ_{x∈R} CE(x, y_refurb) + Σ_{x∈C∖R} CE(x, ỹ) ).

Training runs in rounds (the code's "restart"): each round re-initializes the network and the
optimizer state, trains ``warm_up`` epochs on every sample, then the SELFIE rule for the rest
of the round. Refurbished labels persist across rounds; after each round
τ ← min(τ, 1 − #ever-refurbished / N).

How rounds map onto the engine's epochs: the run's ``epochs`` is the *total* (rounds × epochs
per round; the original protocol is 4 × 100 = 400). ``schedule_epoch`` gives the learning-rate
schedule the epoch within the round (so it restarts, as the code's global step did), and
``on_epoch_start`` re-initializes at a round's first epoch. ``noisyfit selfie-cli`` does the
multiplication for you.

Paper vs code (``variant``; every switch defaults to the official code, ``kaist-dmlab/SELFIE``
HEAD ``cc5d602``):

* ``reuse``: a once-refurbished sample is put in R with its stored label every time it is drawn,
  even when it no longer passes F ≤ ε (code, added Aug 2019; the paper refurbishes only the
  samples passing the test now).
* ``warmup_refurbished``: the warm-up of rounds after the first trains on the stored refurbished
  labels (code comment: "excluded in the paper").
* ``update_tau``: τ ← min(τ, 1 − #ever-refurbished/N) after each round (code, 2020).
* C ∖ R samples with a stored refurbished label use it instead of ỹ (``variant="code"``;
  unreachable when ``reuse`` is on); Eq. 2 uses ỹ (``variant="paper"``).
* ``restart``: 3 in ``main.py`` (4 rounds), 2 in the README (``variant="paper"``).

Departures from the official code (all deliberate):

* **Unfilled history slots** are not predictions: the history is an int32 (N, q) ring buffer
  whose empty slots hold the value K (no class), written at slot ``fill % q`` with a fill
  count per sample; P(y|x; q) counts only filled slots and a sample is refurbishable only once
  its history holds q predictions. The code initializes (and clears after every round)
  histories with zeros, so a sample seen fewer than q times counts as predicted class 0 that
  many times. The code's guard ``q > warm_up → exit`` is therefore unnecessary and dropped.
* |C| = ⌈(1 − τ)·b⌉ is computed with a 1e-9 tolerance (0.7·10 → 7; the code's float
  ``np.ceil`` gives 8).
* **One forward pass** (``forward="one"``, the default): the loss that selects C and the
  predictions that enter the history come from the same training-mode forward pass that is
  back-propagated; the code runs a second forward pass on the selected samples only, so its
  BatchNorm statistics are over R ∪ C — ``forward="two"`` does that (the first pass then
  has no gradient; see docs/benchmarks.md for the measurement).
* **Batches** are a seeded permutation per epoch (every sample once per epoch), not ⌈N/b⌉
  independent draws with replacement across iterations.
* **Logged training loss/error** (``selfie_train_loss``/``selfie_train_error``, the columns of
  ``selfie-cli``'s log.csv) are computed from the same forward pass (before the update), on the
  whole batch with refurbished labels where available, weighted by batch size, without the L2
  term; the code re-runs the network after the update and includes the L2 term.
* Weight decay is the optimizer's (decoupled from the loss), as in every noisyfit method.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..distributed import all_reduce_sum
from .base import (
    METHODS,
    ConfigError,
    Method,
    StepOutput,
    batch_len,
    batch_mean,
    current_step,
    global_sum,
    small_loss_mask,
)

# --------------------------------------------------------------------------------------------
# the rules, as pure functions of tensors (tested on hand-built inputs)


def prediction_counts(history: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts of each class in a batch of prediction histories.

    Args:
        history: (b, q) int predicted labels; the value K marks an empty slot.
        num_classes: K.

    Returns:
        (b, K + 1) float counts; column K counts the empty slots (never a class).
    """
    counts = torch.zeros(history.shape[0], num_classes + 1, device=history.device)
    return counts.scatter_add_(1, history.long(), torch.ones_like(history, dtype=counts.dtype))


def predictive_uncertainty(counts: torch.Tensor) -> torch.Tensor:
    """F(x; q) = −(1/log K)·Σ_y P(y)·log P(y) over the filled slots: P = counts / n, n = the
    number of predictions; ``counts`` (b, K + 1) as :func:`prediction_counts` returns.
    (b,) in [0, 1]; 1 for an empty history."""
    c = counts[:, :-1]
    n = c.sum(1)
    p = c / n.clamp_min(1)[:, None]
    ent = -torch.xlogy(p, p).sum(1) / math.log(c.shape[1])
    return torch.where(n > 0, ent, torch.ones_like(ent))


def refurbishable(
    history: torch.Tensor, num_classes: int, epsilon: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """SELFIE's refurbishment test on a batch of histories (b, q) (value K = empty slot).

    Returns:
        ``(mask, label)``: (b,) bool — the history holds q predictions (no empty slot) and
        F(x; q) ≤ ε; (b,) int64 the most frequent prediction, the refurbished label (ties go
        to the smaller class).
    """
    q = history.shape[1]
    counts = prediction_counts(history, num_classes)
    p = counts[:, :-1] * (1.0 / q)  # exact P for full histories, the only ones that qualify
    f = torch.xlogy(p, p).sum(1) * (-1.0 / math.log(num_classes))
    return (f <= epsilon) & (counts[:, -1] == 0), counts[:, :-1].argmax(1)


def selfie_selection(
    loss: torch.Tensor,
    labels: torch.Tensor,
    stored: torch.Tensor,
    refurb_now: torch.Tensor,
    tau: float,
    *,
    reuse: bool = True,
    stored_for_clean: bool = True,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """R ∪ C and the labels to train on, for one batch.

    Args:
        loss: (b,) cross-entropy against the given labels (selects C).
        labels: (b,) given labels ỹ.
        stored: (b,) int64 refurbished labels *after* this step's refurbishment (−1: never),
            so ``refurb_now`` implies ``stored >= 0``.
        refurb_now: (b,) bool the samples passing F ≤ ε now (their label is in ``stored``).
        tau: τ; |C| = ⌈(1 − τ)·b⌉ (computed with a 1e-9 tolerance, so 0.7·10 = 7, where the
            code's float ``np.ceil`` can give 8).
        reuse: put every sample with a stored label in R (code) — else only ``refurb_now``.
        stored_for_clean: C ∖ R samples with a stored label train on it (code) — else on ỹ.
        batch_size: b of |C| (None: ``len(loss)``; W > 1 processes: the global batch, C
            being chosen over it by ``small_loss_mask``).

    Returns:
        ``(selected, train_labels)``: (b,) bool R ∪ C and (b,) int64 labels (refurbished on
        R, given elsewhere except as ``stored_for_clean`` says).
    """
    b = loss.shape[0] if batch_size is None else batch_size
    clean = small_loss_mask(loss, math.ceil((1.0 - tau) * b - 1e-9))
    has = stored >= 0
    if reuse:  # R = every sample with a stored label (⊇ refurb_now)
        return has | clean, torch.where(has, stored, labels)
    use_stored = refurb_now | (clean & has) if stored_for_clean else refurb_now
    return refurb_now | clean, torch.where(use_stored, stored, labels)


# --------------------------------------------------------------------------------------------
# the method


@METHODS.register("selfie")
class Selfie(Method):
    """SELFIE (ICML 2019): low-loss samples + labels refurbished from consistent predictions."""

    name = "selfie"
    short_run_options = {
        "warm_up": "{quarter}",
        "q": "10",
        "restart": "0",
        "round_epochs": "{epochs}",
    }
    needs = frozenset({"noise_rate"})
    distributed = True  # W > 1: C over the global batch, losses averaged over global counts

    @dataclass
    class Config:
        q: int = 15
        """q, history length: predictions kept per sample (code ``queue_size``)."""
        epsilon: float = 0.05
        """ε, refurbish when the normalized entropy F(x; q) ≤ ε (code ``threshold``)."""
        warm_up: int = 25
        """Epochs at the start of every round trained on all samples (code ``warm_up``)."""
        restart: int | None = None
        """Restarts: restart + 1 rounds (None: 3 for variant code = main.py, 2 for paper =
        README)."""
        round_epochs: int | None = None
        """Epochs per round (None: the run's epochs ÷ (restart + 1); must divide evenly)."""
        variant: Literal["code", "paper"] = "code"
        """Defaults of the switches below: the official code (HEAD cc5d602) or the paper."""
        reuse: bool | None = None
        """Once-refurbished samples stay in R with their stored label (None: code on, paper
        off)."""
        warmup_refurbished: bool | None = None
        """Warm-up trains on stored refurbished labels (None: code on, paper off)."""
        update_tau: bool | None = None
        """τ ← min(τ, 1 − #ever-refurbished/N) after each round (None: code on, paper off)."""
        forward: Literal["one", "two"] = "one"
        """``two``: the code's second forward pass on the selected samples (BatchNorm
        statistics over R ∪ C); ``one``: the ranking pass is back-propagated."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        c = config
        code = c.variant == "code"
        self.reuse = code if c.reuse is None else c.reuse
        self.warmup_refurbished = code if c.warmup_refurbished is None else c.warmup_refurbished
        self.update_tau = code if c.update_tau is None else c.update_tau
        self.stored_for_clean = code
        self.restart = (3 if code else 2) if c.restart is None else c.restart
        if c.q < 1 or not 0.0 <= c.epsilon <= 1.0 or c.warm_up < 0 or self.restart < 0:
            raise ConfigError(
                "selfie: need q ≥ 1, 0 ≤ epsilon ≤ 1, warm_up ≥ 0, restart ≥ 0; "
                f"got q={c.q}, epsilon={c.epsilon}, warm_up={c.warm_up}, "
                f"restart={self.restart}"
            )
        self.rounds = self.restart + 1
        self.round_epochs = c.round_epochs or max(1, ctx.epochs // self.rounds)
        if ctx.noise_rate is None:
            raise ConfigError("selfie needs the noise rate τ: pass --tau RATE or --tau auto")
        self.tau = float(ctx.noise_rate)
        if not 0.0 <= self.tau < 1.0:
            raise ConfigError(
                f"selfie needs 0 ≤ τ < 1 (the clean set holds ⌈(1 − τ)·b⌉ "
                f"samples); got τ = {self.tau}"
            )
        self.tau_history: list[float] = []  # τ after each finished round
        n, dev = ctx.num_samples, ctx.device
        self.models = {"net": ctx.make_model()}
        # the last q predictions per sample, a ring buffer written at slot fill % q; the value
        # K marks an empty slot (never a class); fill = predictions written this round
        self.history = torch.full((n, c.q), ctx.num_classes, dtype=torch.int32, device=dev)
        self.fill = torch.zeros(n, dtype=torch.int32, device=dev)
        self._one = torch.ones(1, dtype=torch.int32, device=dev)
        self.corrected = torch.full((n,), -1, dtype=torch.int64, device=dev)
        # (m, 3) int64 rows (epoch, index, label): every change of ``corrected``, recorded at
        # epoch ends, so the detail log (which needs the truth) can be replayed outside.
        self.refurb_events: list[torch.Tensor] = []
        self._snapshot = self.corrected.clone()
        # the epoch's log: loss sum, errors (on the device) and samples seen
        self._loss_sum = torch.zeros((), device=dev)
        self._errors = torch.zeros((), dtype=torch.int64, device=dev)
        self._seen = 0
        # whether the log's labels (refurbished where stored) are the labels trained on in
        # every phase: then the log reuses the training loss (no extra work in the step)
        self._log_is_train = self.warmup_refurbished and self.reuse
        self.state_names = ("history", "fill", "corrected", "tau", "tau_history", "refurb_events")

    # -- rounds --------------------------------------------------------------------------------
    def round_of(self, epoch: int) -> tuple[int, int]:
        """(round, epoch within the round), both 0-based."""
        return divmod(epoch, self.round_epochs)

    def schedule_epoch(self, epoch, epochs):
        return self.round_of(epoch)[1], self.round_epochs

    def prepare(self):
        total = self.ctx.epochs
        if total != self.rounds * self.round_epochs:
            raise ConfigError(
                f"selfie runs restart + 1 = {self.rounds} rounds of {self.round_epochs} epochs "
                f"= {self.rounds * self.round_epochs} epochs, but the run has {total}; set "
                f"--epochs {self.rounds * self.round_epochs} (the original protocol: "
                f"--epochs 400 = 4 rounds × 100), or --method-options restart R round_epochs E "
                f"with (R + 1)·E = {total}"
            )
        if self.config.warm_up >= self.round_epochs:
            raise ConfigError(
                f"selfie: warm_up = {self.config.warm_up} epochs leaves no SELFIE epoch in a "
                f"round of {self.round_epochs}; lower warm_up (--method-options warm_up N) or "
                "raise the epochs per round"
            )

    def restart_round(self) -> None:
        """A new round: fresh network weights, empty optimizer state and histories; the
        refurbished labels and τ are kept."""
        for m in self.models.values():
            m.load_state_dict(self.ctx.make_model().state_dict())
        if self.optimizer is not None:
            self.optimizer.state.clear()
        self.history.fill_(self.ctx.num_classes)
        self.fill.zero_()

    def on_epoch_start(self, epoch):
        r, e = self.round_of(epoch)
        if r > 0 and e == 0:
            self.restart_round()
        self._loss_sum.zero_()
        self._errors.zero_()
        self._seen = 0

    def on_epoch_end(self, epoch):
        r, e = self.round_of(epoch)
        changed = torch.nonzero(self.corrected != self._snapshot).flatten()
        if len(changed):
            ev = torch.stack([torch.full_like(changed, epoch), changed, self.corrected[changed]], 1)
            self.refurb_events.append(ev.cpu())
            self._snapshot.copy_(self.corrected)
        ever = int((self.corrected >= 0).sum())
        out: dict[str, Any] = {
            "round": r + 1,
            "round_epoch": e + 1,
            "tau": self.tau,
            "refurbished": ever,
            "refurbished_frac": ever / max(1, self.ctx.num_samples),
        }
        loss_sum, errors = all_reduce_sum(self._loss_sum), all_reduce_sum(self._errors)
        out["selfie_train_loss"] = float(loss_sum) / max(self._seen, 1)
        out["selfie_train_error"] = int(errors) / max(self._seen, 1)
        if e == self.round_epochs - 1:  # end of a round
            if self.update_tau:
                self.tau = min(self.tau, 1.0 - ever / max(1, self.ctx.num_samples))
            self.tau_history.append(self.tau)
            out["tau_next"] = self.tau
        return out

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.tau_history = list(self.tau_history)
        self.refurb_events = list(self.refurb_events)
        self._snapshot.copy_(self.corrected)

    # -- the step ------------------------------------------------------------------------------
    def training_step(self, batch, epoch):
        _, e = self.round_of(epoch)
        idx, y = batch.index, batch.labels
        net = self.models["net"]
        two = self.config.forward == "two" and e >= self.config.warm_up
        with torch.no_grad() if two else contextlib.nullcontext():
            logits = net(batch.x)
        logp = F.log_softmax(logits.float(), 1)
        loss_given = F.nll_loss(logp, y, reduction="none").detach()
        stored = self.corrected[idx]
        sh = current_step()  # W > 1: losses are this rank's share of global-batch means
        if e < self.config.warm_up:  # every sample; stored refurbished labels (code)
            train = torch.where(stored >= 0, stored, y) if self.warmup_refurbished else y
            loss = (
                F.nll_loss(logp, train)
                if sh is None
                else batch_mean(F.nll_loss(logp, train, reduction="none"))
            )
            selected = None
        else:
            now, label = refurbishable(self.history[idx], logits.shape[1], self.config.epsilon)
            stored = torch.where(now, label, stored)
            self.corrected[idx] = stored
            selected, train = selfie_selection(
                loss_given,
                y,
                stored,
                now,
                self.tau,
                reuse=self.reuse,
                stored_for_clean=self.stored_for_clean,
                batch_size=batch_len(batch),
            )
            # mean over R ∪ C (Eq. 2): the others are ignored, the loss averaged once
            if sh is not None:  # W > 1: Σ over this rank's R ∪ C / |R ∪ C| of the global batch
                count = global_sum(selected.sum()).clamp_min(1)
                if two:
                    ce = F.cross_entropy(
                        net(batch.x[selected]).float(), train[selected], reduction="sum"
                    )
                else:
                    ce = F.nll_loss(logp, train, reduction="none")[selected].sum()
                loss = ce / count
            elif two:  # the code: a second forward pass on R ∪ C only
                loss = F.cross_entropy(net(batch.x[selected]).float(), train[selected])
            else:
                loss = F.nll_loss(logp, torch.where(selected, train, -100), ignore_index=-100)
        with torch.no_grad():
            pred = logits.argmax(1)
            # the code's training log: whole batch, refurbished labels where available (with
            # the code's defaults these are exactly the labels trained on)
            log_y = train if self._log_is_train else torch.where(stored >= 0, stored, y)
            self._loss_sum += F.nll_loss(logp, log_y, reduction="sum")
            self._errors += (pred != log_y).sum()
            self._seen += batch_len(batch)  # W > 1: the sums are all-reduced at the epoch end
            slot = (self.fill[idx] % self.history.shape[1]).long()
            self.history[idx, slot] = pred.to(torch.int32)
            self.fill.index_add_(0, idx, self._one.expand(len(idx)))
        return StepOutput(
            loss=loss, logits=logits, selected=selected, new_labels=train, score=-loss_given
        )


def replay_refurbishments(
    events: list[torch.Tensor], num_samples: int, epochs: int
) -> Iterator[torch.Tensor]:
    """Yield the refurbished-label map (N,) int64 (−1: never) at the end of each of ``epochs``
    epochs, rebuilt from ``Selfie.refurb_events`` (for detail logs). The same CPU tensor is
    updated in place: copy it to keep it."""
    state = torch.full((num_samples,), -1, dtype=torch.int64)
    ev = torch.cat(events) if events else torch.zeros(0, 3, dtype=torch.int64)
    for epoch in range(epochs):
        rows = ev[ev[:, 0] == epoch]
        state[rows[:, 1]] = rows[:, 2]
        yield state
