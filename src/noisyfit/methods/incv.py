"""``incv``: INCV (Chen, Liao, Chen, Zhang, ICML 2019), ``INCV_main.py``.

Two stages:

1. **Selection** (``prepare()``, :func:`noisyfit.analysis.incv.incv_select`): iterative noisy
   cross-validation over ``iterations`` (4) rounds of two networks each, every network from
   the same initial weights, ``cv_epochs`` (50) epochs, best-validation checkpoint while the
   rule says so. Gives the selected set S, the candidates C and the estimated noise rate ε̂.
   S and C are (N,) bool state tensors (saved in checkpoints; a resumed run does not redo
   the selection).
2. **Modified Co-teaching** on S (the engine's epochs): two fresh networks; each ranks the
   eligible samples of the batch by its own cross-entropy and keeps the n_keep smallest;
   network 1 is trained on network 2's picks and vice versa, each loss the mean over its picks.

   * forget rate ε_S = ε̂² / (ε̂² + k·(1 − ε̂)²), k = K − 1 (symmetric) or 1 (asymmetric)
     — the estimated noise of S (1 − LP of the theory);
   * n_keep = round(m·(1 − ε_S·min(1, e/T_k))), T_k = 10, e the 0-based epoch, m the number
     of S samples in the batch;
   * ``batches="s"`` (default, as INCV_main.py): an epoch is ⌈|S|/b⌉ steps over S-batches of
     b (128) samples of S; for e ≤ e_warm a step sees its S-batch only, afterwards a C-batch
     of min(⌊|C|·b/|S|⌋, ⌊c_ratio·b⌋) candidates (the next of a cycling, shuffled C
     loader) is appended (the engine's batch is extended in place, so its C picks are scored
     like the S ones). n_keep counts the S-batch only; all samples of the joined batch are
     ranked. ``batches="all"``: the engine's loader over all N; each batch's S members (≈
     b·|S|/N of them) and, after e_warm, C members kept with probability
     min(1, c_ratio·|S|/|C|) — the behaviour before.
   * ``rank="eval"`` (default, as the original's ``model.predict`` then ``train_on_batch``):
     each network ranks the batch with an inference-mode forward (no gradient, BatchNorm
     running statistics), then a training-mode forward on the partner's picks gives the loss
     (BatchNorm statistics of the picks). ``rank="train"``: one training-mode forward gives
     both the ranking and the loss (the behaviour before).
   * e_warm = 40, or 80 for asymmetric noise or ε̂ > 0.6, at the original's 200 epochs; by
     default here 20 % / 40 % of the run's epochs (the same at 200), or ``e_warm`` epochs.

``selected`` (each step) is network 2's picks, the samples network 1 — the reported network —
trains on; the engine scores it against the truth (LP/LR) like every method's selection.

Departures from the original code:

* The C loader cycles through its own seeded permutations (its position is saved in
  checkpoints, so a resumed run continues it); Keras' ``datagen.flow`` reshuffles both.
* **Learning rate**: the engine's schedule (the original: Adam 1e-3, ×0.1 at 80, 120, 160 and
  ×0.5 at 180 of 200 epochs, re-compiling — which resets Adam's moments — at each change); use
  ``--optimizer adam --lr 1e-3 --lr-milestones 0.4 0.6 0.8 --lr-decay 0.1`` for the nearest.
* Cross-validation models: :func:`make_cv_trainer` (schedule ×0.125 instead of
  ×0.1 for the last 9 epochs; ε̂'s grid starts at 0, not 0.001; a removal count of 0 removes
  nothing, where the original's ``[-0:]`` slice removed the whole half).
* Noise type: ``noise_kind="auto"`` reads the run's ``--noise`` (``pair``/``asymmetric`` →
  asymmetric), the original's ``--noise_pattern``; it is a user setting, not the truth.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..analysis.incv import incv_select
from ..data.loader import Batch
from ..data.sharded import shard_sizes
from ..distributed import is_main, world
from .base import (
    METHODS,
    ConfigError,
    KeepBest,
    Method,
    StepOutput,
    batch_len,
    current_step,
    global_sum,
    keep_smallest,
    local_part,
    rank,
)

#: INCV.py's schedule for the cross-validation models: Adam(1e-3, β1 0.9), LR ×0.5 after
#: epoch 20, ×0.25 after 30, ×0.1 after 40 of 50. Our step schedule has one factor, so the
#: last step is ×0.125 instead of ×0.1; milestones are fractions of the epochs.
INCV_CV_SCHEDULE = dict(
    optimizer="adam",
    lr=1e-3,
    momentum=0.9,
    lr_schedule="step",
    lr_milestones=(0.42, 0.62, 0.82),
    lr_decay=0.5,
)


def make_cv_trainer(ctx, *, epochs: int, schedule: str = "incv", init_state: dict | None = None):
    """(train_fn, predict_fn) for :func:`~noisyfit.analysis.incv.incv_select` on a method
    Context: ``ctx.train_model`` (with ``keep_best``: the epoch of the best accuracy w.r.t.
    the given labels on the validation half) and ``ctx.predict``.

    Every model starts from ``init_state`` (one fresh network's weights, as INCV's
    ``weights_initial``). ``schedule="incv"`` uses :data:`INCV_CV_SCHEDULE`, ``"run"`` the
    run's optimizer and schedule.
    """
    if init_state is None:
        init_state = copy.deepcopy(ctx.make_model().state_dict())
    changes = dict(INCV_CV_SCHEDULE) if schedule == "incv" else {}
    count = [0]

    def train_fn(train_mask, val_mask, keep_best):
        count[0] += 1
        it, half = (count[0] + 1) // 2, 2 - count[0] % 2
        return ctx.train_model(
            train_mask,
            epochs=epochs,
            init_state=init_state,
            describe=f"INCV it {it} half {half} ",
            keep_best=KeepBest(val_mask) if keep_best else None,
            **changes,
        )

    def predict_fn(model, mask):
        return ctx.predict(model, mask)

    return train_fn, predict_fn


def symmetric_noise(noise_kind: str, noise: str | None) -> bool:
    """INCV's noise pattern: ``noise_kind`` ``symmetric``/``asymmetric``, or with ``auto`` the
    run's ``--noise`` (``pair``/``asymmetric`` → asymmetric; a user setting, not the truth)."""
    if noise_kind == "auto":
        return noise not in ("pair", "asymmetric")
    return noise_kind == "symmetric"


def select_on(ctx, opts, *, symmetric: bool, **kw):
    """INCV's first stage on a Context: :func:`~noisyfit.analysis.incv.incv_select` with the
    cross-validation networks of :func:`make_cv_trainer` and the options ``opts`` (an
    ``INCV.Config``); ``kw`` goes to ``incv_select`` (``true_labels``, ``log``, the stage
    state). What the ``incv`` method and ``noisyfit clean`` run."""
    train_fn, predict_fn = make_cv_trainer(ctx, epochs=opts.cv_epochs, schedule=opts.cv_schedule)
    return incv_select(
        ctx.loader.labels,
        ctx.num_classes,
        train_fn,
        predict_fn,
        iterations=opts.iterations,
        symmetric=symmetric,
        eps=opts.eps,
        keep_best=opts.keep_best,
        seed=opts.split_seed if opts.split_seed is not None else ctx.seed,
        **kw,
    )


def selected_noise_rate(eps_hat: float, num_classes: int, symmetric: bool) -> float:
    """ε_S = ε̂² / (ε̂² + k·(1 − ε̂)²), k = K − 1 (symmetric) or 1: the expected noise of S."""
    k = (num_classes - 1) if symmetric else 1
    den = eps_hat**2 + k * (1.0 - eps_hat) ** 2
    return eps_hat**2 / den if den > 0 else 0.0


@METHODS.register("incv")
class INCV(Method):
    """INCV: noisy cross-validation selects clean samples, then Co-teaching on them."""

    name = "incv"
    distributed = True  # W > 1: stage 1 through ctx.train_model; stage 2 global selection
    short_run_options = {"cv_epochs": "{half}", "t_k": "{twentieth}"}
    needs = frozenset({"subsets"})  # trains and predicts on folds of the training set
    stage_files = ("incv_stage1.pt",)
    stage_note = "INCV's selection resumes from its last finished iteration"

    @dataclass
    class Config:
        iterations: int = 4  # INCV_iter, rounds of 2-fold noisy cross-validation
        cv_epochs: int = 50  # INCV_epochs, epochs of each cross-validation network
        cv_schedule: Literal["incv", "run"] = "incv"  # INCV.py's Adam schedule, or the run's
        keep_best: bool = True  # best-validation checkpoint rule (False: last epoch always)
        noise_kind: Literal["auto", "symmetric", "asymmetric"] = "auto"  # noise_pattern
        eps: float | None = None  # ε̂ given instead of estimated (None: estimate, as the paper)
        t_k: int = 10  # T_k, epochs over which the forget rate ramps up to ε_S
        e_warm: int | None = None  # e_warm epochs of S only (None: 20 % / 40 % of the epochs)
        c_ratio: float = 0.5  # C samples per S sample at most after e_warm (64/128)
        batches: Literal["s", "all"] = "s"  # S-batches of b, |S|/b steps (official), or all N
        rank: Literal["eval", "train"] = "eval"  # ranking forward: inference mode (official)
        split_seed: int | None = None  # seed of the random halves (None: the run's seed)

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if config.iterations < 1 or config.cv_epochs < 1:
            raise ConfigError("incv: iterations and cv_epochs must be ≥ 1")
        if not 0 <= config.c_ratio:
            raise ConfigError("incv: c_ratio must be ≥ 0")
        self.models = {"net1": ctx.make_model(), "net2": ctx.make_model()}
        n = ctx.num_samples
        # before prepare() (and in unit tests): every sample selected, no candidates
        self.select = torch.ones(n, dtype=torch.bool, device=ctx.device)
        self.candidate = torch.zeros(n, dtype=torch.bool, device=ctx.device)
        self.eps_hat = float(config.eps if config.eps is not None else (ctx.noise_rate or 0.0))
        self.selection_log: list = []
        self.state_names = ("select", "candidate", "eps_hat", "selection_log")
        self._c_epoch = 0  # the cycling C loader's epoch and batches drawn in it (saved)
        self._c_pos = 0
        self._derive()

    # -- settings derived from S, C and ε̂ ------------------------------------------------
    @property
    def symmetric(self) -> bool:
        return symmetric_noise(self.config.noise_kind, getattr(self.ctx.config, "noise", None))

    def _derive(self) -> None:
        cfg = self.config
        self.eps_s = selected_noise_rate(self.eps_hat, self.ctx.num_classes, self.symmetric)
        hard = (not self.symmetric) or self.eps_hat > 0.6
        epochs = self.ctx.epochs
        self.e_warm = (
            cfg.e_warm if cfg.e_warm is not None else round((0.4 if hard else 0.2) * epochs)
        )
        n_s = int(self.select.sum())
        n_c = int(self.candidate.sum())
        # batches="all": keep each C sample of a batch with this probability (C ≤ c_ratio·S)
        self.c_prob = min(1.0, cfg.c_ratio * n_s / n_c) if n_c else 0.0
        # batches="s": INCV_main.py's batch_size_val = min(int(|C|·b/|S|), int(0.5·b))
        b = self.ctx.batch_size
        self.c_batch = min(int(n_c * b / n_s), int(cfg.c_ratio * b)) if n_s and n_c else 0
        self.sizes = (n_s, n_c)
        self._c_iter = None

    # -- stage 1 ------------------------------------------------------------------------------
    def prepare(self) -> None:
        ctx, cfg = self.ctx, self.config
        if ctx.train_model is None or ctx.predict is None or ctx.loader is None:
            raise ConfigError(
                "incv needs the engine's training services (ctx.train_model, "
                "ctx.predict, ctx.loader); run it through noisyfit.train"
            )
        res = select_on(ctx, cfg, symmetric=self.symmetric, **self._stage_store())
        self.select.copy_(res.select)
        self.candidate.copy_(res.candidate)
        self.eps_hat = res.eps_hat
        self.selection_log = res.iterations
        self._derive()
        print(
            f"INCV selection: |S| = {self.sizes[0]}, |C| = {self.sizes[1]} of "
            f"{ctx.num_samples}; ε̂ = {self.eps_hat:.3f}, forget rate ε_S = {self.eps_s:.3f}, "
            f"e_warm = {self.e_warm}"
        )

    def _stage_store(self) -> dict:
        """The stage file's saved state and writer; W > 1: every rank reads, rank 0 writes."""
        ctx = self.ctx
        store = dict(ctx.stage_state(self.stage_files[0])) if ctx.stage_state else {}
        if store and not is_main():
            store["save_state"] = lambda state: None
        return store

    def state_dict(self):
        return {**super().state_dict(), "c_epoch": self._c_epoch, "c_pos": self._c_pos}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self._derive()
        self._c_epoch = int(state.get("c_epoch", 0))  # older checkpoints: from its start
        self._c_pos = int(state.get("c_pos", 0))

    # -- stage 2 ------------------------------------------------------------------------------
    def epoch_loader(self, loader):
        """``batches="s"``: the engine iterates S only (⌈|S|/b⌉ steps of b S samples)."""
        if self.config.batches == "s" and bool(self.select.any()):
            return loader.subset(self.select)
        return loader

    def on_epoch_start(self, epoch):
        if self.config.batches == "s" and epoch > self.e_warm and self.c_batch > 0:
            self._c_batches()  # built here: a subset's indices are a host read (not in the step)

    def _next_c_batch(self):
        """The next C-batch of a cycling, shuffled loader over the candidates."""
        self._c_batches()
        try:
            batch = next(self._c_iter)
        except StopIteration:
            self._c_epoch += 1
            self._c_pos = 0
            self._c_iter = self._c_loader.epoch(self._c_epoch)
            batch = next(self._c_iter)
        self._c_pos += 1
        return batch

    def _c_batches(self) -> None:
        """The cycling, shuffled loader over the candidates C (built once; after a resume at
        the saved position)."""
        if self._c_iter is None:
            base = self.ctx.loader
            self._c_loader = base.subset(self.candidate)
            self._c_loader.batch_size = self.c_batch
            self._c_loader.seed = base.seed + 3
            self._c_iter = self._c_loader.epoch(self._c_epoch)
            for _ in range(self._c_pos):
                next(self._c_iter, None)

    def forget_rate(self, epoch: int) -> float:
        """ε_S·min(1, e/T_k)."""
        return self.eps_s * min(1.0, epoch / self.config.t_k) if self.config.t_k > 0 else self.eps_s

    def training_step(self, batch, epoch):
        sh = current_step()  # W > 1: this rank's share of the global batch
        if self.config.batches == "s":
            n_s = batch_len(batch)  # the engine's batch is an S-batch
            if epoch > self.e_warm and self.c_batch > 0:
                c = self._next_c_batch()  # extend the engine's batch: its C picks are scored
                if sh is not None:
                    c = _c_share(batch, c, sh)
                batch.index = torch.cat([batch.index, c.index])
                batch.x = torch.cat([batch.x, c.x])
                batch.labels = torch.cat([batch.labels, c.labels])
            eligible = torch.ones(len(batch), dtype=torch.bool, device=batch.x.device)
            n_keep = int(round(n_s * (1.0 - self.forget_rate(epoch))))  # known on the host
        else:
            idx = batch.index
            in_s = self.select[idx]
            eligible = in_s
            if epoch > self.e_warm and self.c_prob > 0:
                in_c = self.candidate[idx]
                if self.c_prob < 1:
                    draw = torch.rand(batch_len(batch), device=idx.device)  # the global batch's
                    in_c = in_c & (local_part(draw) < self.c_prob)
                eligible = in_s | in_c
            n_keep = torch.round(global_sum(in_s.sum()) * (1.0 - self.forget_rate(epoch)))
        x, y = batch.x, batch.labels
        net1, net2 = self.models["net1"], self.models["net2"]
        den = max(n_keep, 1) if isinstance(n_keep, int) else n_keep.clamp_min(1)
        if self.config.rank == "eval":  # model.predict, then train_on_batch on the picks
            with torch.no_grad():
                self.eval()
                logits1, logits2 = net1(x), net2(x)
                self.train()
            ce1 = F.cross_entropy(logits1.float(), y, reduction="none")
            ce2 = F.cross_entropy(logits2.float(), y, reduction="none")
            keep1 = keep_smallest(ce1, eligible, n_keep)
            keep2 = keep_smallest(ce2, eligible, n_keep)
            if (
                isinstance(n_keep, int) and sh is None
            ):  # S-batches: the picks by index (a known count, no sync)
                pick1 = ce1.detach().argsort(stable=True)[:n_keep]
                pick2 = ce2.detach().argsort(stable=True)[:n_keep]
            else:  # over all N (a device count) or W > 1 (global picks): the picks a mask
                pick1, pick2 = keep1, keep2
            loss1 = F.cross_entropy(net1(x[pick2]).float(), y[pick2], reduction="sum")
            loss2 = F.cross_entropy(net2(x[pick1]).float(), y[pick1], reduction="sum")
            loss = loss1 / den + loss2 / den
        else:
            logits1, logits2 = net1(x), net2(x)
            ce1 = F.cross_entropy(logits1.float(), y, reduction="none")
            ce2 = F.cross_entropy(logits2.float(), y, reduction="none")
            keep1 = keep_smallest(ce1, eligible, n_keep)
            keep2 = keep_smallest(ce2, eligible, n_keep)
            loss = (ce1 * keep2).sum() / den + (ce2 * keep1).sum() / den
        return StepOutput(loss=loss, logits=logits1, selected=keep2, score=-ce1.detach())

    def on_epoch_end(self, epoch):
        n = max(self.ctx.num_samples, 1)
        return {
            "incv_eps_hat": self.eps_hat,
            "incv_forget_rate": self.forget_rate(epoch),
            "incv_S_frac": self.sizes[0] / n,
            "incv_C_frac": self.sizes[1] / n,
            "incv_C_mixed": float(epoch > self.e_warm and self.c_prob > 0),
        }


def _c_share(batch, c, sh) -> Batch:
    """W > 1: this rank's share of the C-batch ``c`` (the same on every rank); the step's
    shard (``batch`` and the engine's ``StepShard``) grows by every rank's share, so the
    selection ranks and the engine syncs the joined global batch [S₀ C₀ S₁ C₁ …]."""
    cs = shard_sizes(len(c), world())
    r = rank()
    part = slice(sum(cs[:r]), sum(cs[: r + 1]))
    sizes = tuple(a + b for a, b in zip(sh.sizes, cs))
    if getattr(batch, "global_index", None) is not None:
        s_parts = batch.global_index.split(list(sh.sizes))
        c_parts = c.index.split(list(cs))
        batch.global_index = torch.cat([t for pair in zip(s_parts, c_parts) for t in pair])
    sh.sizes, sh.global_size, sh.offset = sizes, sh.global_size + len(c), sum(sizes[:r])
    batch.sizes, batch.global_size, batch.offset = sh.sizes, sh.global_size, sh.offset
    return Batch(c.index[part], c.x[part], c.labels[part])
