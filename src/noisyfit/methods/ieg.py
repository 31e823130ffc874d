"""``ieg``: "Distilling Effective Supervision from Severe Label Noise" (Zhang, Zhang, Arik, Lee,
Pfister, CVPR 2020; first titled IEG: Isolation, Escalation, Guidance), as coded in
``google-research/ieg/models/model.py``.

One step, with a noisy batch of B images, their weak view x (the loader's pad-crop + flip) and
strong view x̂ (AutoAugment or RandAugment, flip, pad-crop, Cutout; ``noisyfit.data.augment``), and a
clean probe batch:

1. **Label guessing**: g ∝ (½[softmax(n(f(x))) + softmax(n(f(x̂)))])^(1/T), T = 0.5, where
   n(z) = z / RMS(z) is IEG's logit normalisation over the whole (B, K) logit tensor of a view.
2. **MixUp CE** (``crossentropy_minimize``): draw B probe samples with replacement; mix the
   concatenation [probe (one-hot), x (g), x̂ (g)] with a random permutation of itself and
   μ = max(m, 1 − m), m = u^(1/β)/2, u ~ U(0, 1), β = 0.5; loss = CE(probe part) +
   ``ce_factor`` (p = 5) · CE(noisy part), on logit-normalised logits of each part.
3. **Consistency**: ``consistency_factor`` (k = 20) · mean_i KL(softmax(f(x_i)) ‖ softmax(f(x̂_i))),
   no gradient through the first argument.
4. **Meta step**: ω = 1/B, λ = λ₀ = 0.9 (both requiring grad); target P(λ_i) = λ_i·onehot(ỹ_i) +
   (1 − λ_i)·g_i; look-ahead loss Σ_i ω_i CE(P(λ_i), f(x_i)) + ½wd‖θ‖²; virtual step
   θ' = θ − 0.1·(0.9·m + ∇θ) with the optimizer's momentum buffer m; probe loss at θ'; then
   ω* = max(−∂L/∂ω, 0)/(Σ + 1e-5) and λ*_i = 1 if ∂L/∂λ_i < 0 else 0 (see ``l2r``).
5. **Supervised loss**: ½[mean_i CE(P(λ*_i), f(x_i)) + Σ_i ω*_i CE(P(λ₀), f(x_i))].
6. Total = 5 + 2 + 3 (weight decay from the optimizer); evaluation with an EMA (0.999).

``threshold`` (None: the code) switches on the paper's isolation before MixUp: examples with
B·ω*_i ≥ ``threshold`` count as likely clean and join the probe side of the MixUp with their
meta-chosen target P(λ*_i), the rest keep the guessed label on the noisy side (the paper's exact
rule is not in the code; this is our reading, see docs/methods/ieg.md).

Under torchrun, ``meta_sync="exact"`` (default) trains the 1-process step of the global
batch; ``"per-replica"`` follows the official MirroredStrategy code (``model.py``): the whole
step on this rank's rows and its share of the probe batch under ``replica_local()`` — ω = 1/b,
logit RMS, weight normaliser, probe draws, MixUp and means per rank, no collective — and the
loss divided by W. The strong view alone is still drawn for the global batch (the random
streams stay aligned across ranks).

Reported to the engine: ``weights`` ω*, ``selected`` ω* > 0 (the isolated "likely clean" set
for label precision/recall), ``new_labels`` ỹ_i where λ*_i = 1 and argmax g_i where λ*_i = 0
(correction accuracy), ``score`` −∂L/∂ω.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..data.augment import StrongAugment
from ..data.loader import Batch, epoch_generator
from ..distributed import all_reduce_sum_autograd, replica_local, world
from .base import METHODS, StepOutput, batch_mean, current_step, gather_batch, local_part
from .l2r import ProbeMethod, meta_gradients, normalized_weights, replica_probe


def logit_norm(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """IEG's ``logit_norm``: z / sqrt(mean(z²) + 1e-8) over the whole (b, K) tensor.

    In a multi-process step z is this rank's rows and the mean runs over the global batch's
    rows; the sum is all-reduced with its gradient (``all_reduce_sum_autograd``), so every
    rank's logits get the other ranks' ∂L/∂RMS as in one process."""
    if current_step() is None:
        return z * torch.rsqrt(z.pow(2).mean() + eps)
    ss = z.pow(2).sum()
    tot = all_reduce_sum_autograd(torch.stack([ss, ss.new_tensor(float(z.numel()))]))
    return z * torch.rsqrt(tot[0] / tot[1] + eps)


def guess_labels(
    logit_views: list[torch.Tensor], temperature: float = 0.5, normalize: bool = True
) -> torch.Tensor:
    """Sharpened average prediction over views: (B, K) rows summing to 1."""
    probs = [(logit_norm(z) if normalize else z).float().softmax(1) for z in logit_views]
    p = torch.stack(probs).mean(0).pow(1.0 / temperature)
    return p / p.sum(1, keepdim=True)


def soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) cross-entropy of logits against soft targets."""
    return -(target * logits.float().log_softmax(1)).sum(1)


def mixup(x: torch.Tensor, y: torch.Tensor, beta: float = 0.5):
    """IEG's MixUp of a batch with a permutation of itself; μ = max(m, 1 − m), m = u^(1/β)/2.

    Returns (mixed x, mixed y, μ (B,), permutation (B,)).
    """
    n = x.shape[0]
    m = torch.rand(n, device=x.device).pow(1.0 / beta) / 2
    mu = torch.maximum(m, 1 - m)
    perm = torch.randperm(n, device=x.device)
    shape = (n,) + (1,) * (x.ndim - 1)
    xm = x * mu.view(shape) + x[perm] * (1 - mu.view(shape))
    ym = y * mu[:, None] + y[perm] * (1 - mu[:, None])
    return xm, ym, mu, perm


def ieg_meta_step(
    net,
    logits,
    onehot,
    guess,
    probe_x,
    probe_y,
    *,
    lam0=0.9,
    step_size=0.1,
    momentum=0.9,
    optimizer=None,
    weight_decay=True,
    x=None,
):
    """IEG's ``meta_optimize``: example weights ω* and label choices λ* for one batch.

    Args:
        net: the live network; ``logits`` (B, K) its training forward on the batch.
        onehot: (B, K) one-hot given labels; guess: (B, K) guessed label distributions g.
        probe_x, probe_y: the clean probe batch.
        lam0: λ₀, the initial label coefficient; ω starts at 1/B.
        step_size, momentum, optimizer, weight_decay: the virtual step (see ``meta_gradients``).
        x: the batch ``logits`` came from (given: the forward-mode meta-gradient, no double
            backward; ``meta_gradients``).

    Returns:
        (ω* (B,), λ* (B,) in {0, 1}, ∂L/∂ω (B,), ∂L/∂λ (B,)), all detached.
    """
    b = logits.shape[0]
    sh = current_step()  # W > 1: ω = 1/n over the global batch of n
    n = b if sh is None else sh.global_size
    omega = torch.full((b,), 1.0 / n, device=logits.device, requires_grad=True)
    lam = torch.full((b,), float(lam0), device=logits.device, requires_grad=True)
    log_p = logits.float().log_softmax(1)

    def lookahead(w, l):
        target = l[:, None] * onehot + (1 - l[:, None]) * guess
        return (w * -(target * log_p).sum(1)).sum()

    (g_omega, g_lam), _, _ = meta_gradients(
        net,
        lookahead,
        (omega, lam),
        probe_x,
        probe_y,
        step_size=step_size,
        momentum=momentum,
        optimizer=optimizer,
        weight_decay=weight_decay,
        train_x=x,
        train_logits=logits if x is not None else None,
    )
    w = normalized_weights(g_omega).detach()
    lam_star = (g_lam < 0).float().detach()
    return w, lam_star, g_omega.detach(), g_lam.detach()


class InterleavedProbe:
    """IEG's probe input (``set_input``): the probe set in class-interleaved order (c₀, c₁, …,
    c_{K−1}, c₀, …), never shuffled, repeated and cut into batches of b with
    ``drop_remainder`` (``probe_dataflow.repeat().batch(b)``): batch k holds the positions
    k·b … k·b + b − 1 (mod P), so every batch is class balanced. ``step`` is all its state
    (saved in checkpoints like :class:`~noisyfit.methods.l2r.ProbeStream`'s).
    """

    def __init__(self, loader, batch_size: int):
        self.loader, self.batch_size, self.step = loader, int(batch_size), 0
        idx = loader.indices
        labels = loader.labels[idx]
        k = int(labels.max()) + 1 if len(labels) else 1
        rank = torch.zeros_like(labels)
        for c in range(k):  # K iterations: the position of each sample within its class
            members = labels == c
            rank[members] = torch.arange(int(members.sum()), device=labels.device)
        self.order = idx[torch.argsort(rank * k + labels, stable=True)]

    def __len__(self) -> int:
        return len(self.order)

    def next(self) -> Batch:
        p, dev = len(self.order), self.order.device
        pos = (self.step * self.batch_size + torch.arange(self.batch_size, device=dev)) % p
        bi = self.order[pos]
        g = epoch_generator(self.loader.seed, self.step, self.loader.device)
        self.step += 1
        return self.loader.batch(bi, g)


@METHODS.register("ieg")
class IEG(ProbeMethod):
    """IEG: label guessing, meta re-weighting and re-labelling, MixUp and consistency on a probe."""

    name = "ieg"
    # W > 1: exact (global logit RMS with its gradient, global MixUp, ω = 1/n) or per-replica
    distributed = True
    collapse_hint = (
        "IEG on a small network needs a ramp-up and a lower consistency weight: "
        "rampup_steps 500, consistency_factor 0 (docs/methods/ieg.md)."
    )

    @dataclass
    class Config:
        # W > 1: "exact" (the 1-process step of the global batch) or "per-replica" (the
        # official MirroredStrategy code: this rank's train and probe shard alone, ω = 1/b,
        # logit RMS, weight normaliser, MixUp and means per rank, loss / W); one process: same
        meta_sync: Literal["exact", "per-replica"] = "exact"
        ce_factor: float = 5.0  # p, weight of the noisy part of the MixUp CE
        consistency_factor: float = 20.0  # k, weight of the KL consistency loss
        meta_stepsize: float = 0.1  # α of the virtual step
        meta_momentum: float = 0.9  # factor of the optimizer's momentum buffer in it
        grad_eps_init: float = 0.9  # λ₀, initial trust in the given label
        temperature: float = 0.5  # T of label sharpening
        mixup_beta: float = 0.5  # β of MixUp's mixing coefficient
        aug_type: Literal["autoaug", "randaug", "default"] = "autoaug"  # strong view policy
        logit_norm: bool = True  # IEG's logit normalisation in guessing and MixUp CE
        meta_weight_decay: bool = True  # weight decay in look-ahead and meta loss (IEG code)
        detach_guess: bool = False  # True: no gradient through g (the code lets it flow)
        probe_order: Literal["interleaved", "shuffled"] = "interleaved"  # set_input's probe
        strong_from: Literal["weak", "raw"] = "weak"  # strong view from the crop/flip (code)
        threshold: float | None = None  # paper variant: B·ω* ≥ T joins the clean MixUp side
        ema_decay: float = 0.999  # EMA of the weights used for evaluation (0: off)
        rampup_steps: int = 0  # ramp p and k linearly from 0 over this many steps (0: code)

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        size = tuple(ctx.input_shape[-2:]) if len(ctx.input_shape) == 3 else None
        self.augment = StrongAugment(config.aug_type, image_size=size)
        self.steps = 0  # training steps taken (for the ramp-up)
        # the official probe order; a streaming loader (WebVision folders) keeps its shuffle
        if config.probe_order == "interleaved" and getattr(ctx.probe, "in_memory", False):
            self.probe = InterleavedProbe(ctx.probe, ctx.batch_size)

    def strong_view(self, batch):
        """(b, ...) the strong view of ``batch``; in a multi-process step drawn for the whole
        global batch (the same random draws as one process, on every rank) and cut to this
        rank's rows."""
        if current_step() is None or hasattr(self.ctx.loader, "strong_view"):
            return self._strong_view(batch)
        whole = Batch(batch.global_index, gather_batch(batch.x), gather_batch(batch.labels))
        return local_part(self._strong_view(whole))

    def _strong_view(self, batch):
        """The strong view: from the weak view's crop/flip (``strong_from="weak"``, as
        ``autoaug_batch_process_map_fn`` augments the already crop/flipped batch), recovered as
        uint8 by inverting the loader's channel normalization; else (per-image normalization,
        or ``strong_from="raw"``) from the raw images."""
        loader = self.ctx.loader
        raw = None
        if (
            self.config.strong_from == "weak"
            and loader is not None
            and getattr(loader, "augment", False)
            and getattr(loader, "is_image", False)
            and loader.x.dtype == torch.uint8
            and loader.normalize in ("channel", "none")
            and not hasattr(loader, "strong_view")
        ):
            x = batch.x.float()
            if loader.normalize == "channel":
                x = (x - loader._add) / loader._mul
            raw = x.round().clamp(0, 255).to(torch.uint8)
        return self.augment(loader, batch, raw)

    def ramp(self) -> float:
        """Factor of p and k at this step: 1, or min(1, step/rampup_steps) with a ramp-up."""
        r = self.config.rampup_steps
        return 1.0 if r <= 0 else min(1.0, self.steps / r)

    # ------------------------------------------------------------------------------------
    def training_step(self, batch, epoch):
        probe, local = replica_probe(self, self.probe.next())
        x_strong = self.strong_view(batch)  # per-replica too: the global batch's draws
        if not local:
            return self._step(batch, probe, x_strong)
        with replica_local():  # official per-replica rule: every sum and mean on this rank
            out = self._step(batch, probe, x_strong)
        out.loss = out.loss / world()  # the replicas' mean (DDP then sums the W shares)
        return out

    def _step(self, batch, probe, x_strong):
        """The step on ``batch`` (this rank's rows), its probe batch and strong view."""
        cfg = self.config
        net = self.models["net"]
        k = self.ctx.num_classes
        logits = net(batch.x)
        aug_logits = net(x_strong)

        # 1. label guessing over the two views
        guess = guess_labels([logits, aug_logits], cfg.temperature, cfg.logit_norm)
        if cfg.detach_guess:
            guess = guess.detach()
        onehot = F.one_hot(batch.labels, k).float()

        # 4. meta step: example weights ω* and label choices λ*
        w, lam_star, g_omega, _ = ieg_meta_step(
            net,
            logits,
            onehot,
            guess,
            probe.x,
            probe.labels,
            lam0=cfg.grad_eps_init,
            step_size=cfg.meta_stepsize,
            momentum=cfg.meta_momentum,
            optimizer=self.optimizer,
            weight_decay=cfg.meta_weight_decay,
            x=batch.x,
        )

        # 5. supervised loss with the new weights and label choices
        target_star = lam_star[:, None] * onehot + (1 - lam_star[:, None]) * guess
        target_0 = cfg.grad_eps_init * onehot + (1 - cfg.grad_eps_init) * guess
        sup = 0.5 * (
            batch_mean(soft_ce(logits, target_star)) + (w * soft_ce(logits, target_0)).sum()
        )

        # 2. MixUp CE over probe and noisy views; 3. consistency
        xe = self._mixup_ce(batch.x, x_strong, guess, probe, w, target_star)
        kl = self._consistency(logits, aug_logits)
        loss = sup + xe + kl
        self.steps += 1

        new_labels = torch.where(lam_star > 0, batch.labels, guess.argmax(1))
        return StepOutput(
            loss=loss,
            logits=logits,
            selected=w > 0,
            weights=w,
            new_labels=new_labels,
            score=-g_omega.detach(),
        )

    def _mixup_ce(self, x, x_strong, guess, probe, w, target_star):
        cfg = self.config
        if cfg.ce_factor == 0:
            return torch.zeros((), device=x.device)
        # W > 1: the MixUp of the global batch's 3n rows (probe draws, partners and μ from the
        # shared RNG, as in one process), of which this rank trains its own 3b rows
        sh = current_step()
        b, k = x.shape[0], guess.shape[1]
        n = b if sh is None else sh.global_size
        net = self.models["net"]
        pick = torch.randint(0, len(probe), (n,), device=x.device)
        px, py = probe.x[pick], F.one_hot(probe.labels[pick], k).float()
        guess, w, target_star = (gather_batch(t) for t in (guess, w, target_star))
        u_target = torch.cat([guess, guess])
        clean = torch.zeros(2 * n, dtype=torch.bool, device=x.device)
        if cfg.threshold is not None:  # paper: likely-clean examples join the labelled side
            likely = (w * n) >= cfg.threshold
            clean = torch.cat([likely, likely])
            u_target = torch.where(clean[:, None], torch.cat([target_star, target_star]), u_target)
        xs = torch.cat([px, gather_batch(x), gather_batch(x_strong)])
        ys = torch.cat([py, u_target.detach()])
        xm, ym, _, _ = mixup(xs, ys, cfg.mixup_beta)
        labelled_all = torch.cat([torch.ones(n, dtype=torch.bool, device=x.device), clean])
        labelled = labelled_all
        if sh is not None:  # this rank's rows of each third
            mine = torch.arange(n, device=x.device)[sh.part]
            rows = torch.cat([mine, mine + n, mine + 2 * n])
            xm, ym, labelled = xm[rows], ym[rows], labelled_all[rows]
        out = net(xm)
        parts = out.split([b, b, b])
        if cfg.logit_norm:
            parts = [logit_norm(p) for p in parts]
        ce = soft_ce(torch.cat(parts), ym)
        l_loss = (ce * labelled).sum() / labelled_all.sum()
        u_n = (~labelled_all).sum()
        u_loss = (ce * ~labelled).sum() / u_n.clamp_min(1)
        return l_loss + cfg.ce_factor * self.ramp() * u_loss

    def _consistency(self, logits, aug_logits):
        if self.config.consistency_factor == 0:
            return torch.zeros((), device=logits.device)
        q = logits.detach().float()
        kl = (q.softmax(1) * (q.log_softmax(1) - aug_logits.float().log_softmax(1))).sum(1)
        return self.config.consistency_factor * self.ramp() * batch_mean(kl)

    # ------------------------------------------------------------------------------------
    def state_dict(self):
        return {**super().state_dict(), "steps": self.steps, "augment": self.augment.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.steps = int(state["steps"])
        if "augment" in state:  # the strong view's host random draws (older checkpoints: none)
            self.augment.load_state_dict(state["augment"])
