"""``dividemix``: DivideMix (Li, Socher, Hoi, ICLR 2020), as in the official code
``LiJunnan1992/DivideMix`` (``Train_cifar.py``, ``dataloader_cifar.py``; HEAD ``d9d3058``).

Two networks. For the first ``warm_up`` epochs both train with plain cross-entropy on all samples
(plus a confidence penalty −H(p) for asymmetric noise, the code's ``NegEntropy``). Then, at the
start of every epoch (``on_epoch_start``), **co-divide**:

1. each network's per-sample cross-entropy over the whole training set (eval mode, no
   augmentation), min–max normalized to [0, 1] (with ``loss_window`` > 1: the mean of the last
   that many epochs' vectors, the code's choice for 90 % noise);
2. a two-component 1-D Gaussian mixture fitted to it (:func:`gmm_clean_probability`: EM as
   sklearn's ``GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4)``, here on
   torch tensors on the device); w_i = posterior of the low-mean component, the **clean
   probability**, kept per sample (``prob``, (2, N), in the checkpoint);
3. network 1 trains with network 2's division (labelled: w⁽²⁾_i > τ_p; unlabelled: the rest)
   and vice versa.

Per step, for network a with partner b, on the labelled part X (labels y, weights w = w⁽ᵇ⁾) and
the unlabelled part U of the batch, each seen in two augmented views:

* **label co-refinement** (X): p = mean of f_a's softmax over the two views;
  p ← w·onehot(y) + (1 − w)·p, sharpened p^{1/T}/Σ p^{1/T};
* **label co-guessing** (U): mean of f_a's and f_b's softmax over both views, sharpened;
* **MixMatch**: λ ~ Beta(α, α), λ ← max(λ, 1 − λ); all 2|X| + 2|U| inputs and targets mixed
  with a random permutation of themselves;
* loss = L_X + λ_u(t)·L_U + R: L_X the soft cross-entropy of the mixed labelled part, L_U the
  mean squared error of softmax vs target on the mixed unlabelled part, λ_u(t) =
  λ_u·clip((t − warm_up)/16, 0, 1) with t = epoch + step/steps (linear ramp-up), and R = Σ_k
  π_k log(π_k / p̄_k) with π uniform and p̄ the mean prediction over the mixed batch.

Prediction: the sum of both networks' logits (``test``: outputs1 + outputs2).

**Presets** (the paper's Table 5 / appendix; ``lambda_u`` and ``p_threshold`` left at None take
them from :data:`PRESETS` by dataset size K (≤ 10: CIFAR-10, else CIFAR-100), noise kind and the
nearest tabulated noise rate; the values used are logged every epoch as ``lambda_u`` and
``p_threshold``)::

    CIFAR-10   symmetric 0.2: λ_u 0    symmetric 0.5: 25   0.8: 25   0.9: 50 (τ_p 0.6)
               asymmetric 0.4: λ_u 0
    CIFAR-100  symmetric 0.2: λ_u 25   0.5: 150   0.8: 150   0.9: 150 (τ_p 0.6)
    τ_p = 0.5 except at 0.9; warm-up 10 epochs (CIFAR-10), 30 (CIFAR-100);
    T = 0.5, α = 4, lr 0.02 (÷10 at epoch 150 of 300), batch 64.

``pair`` and ``asymmetric`` noise use the asymmetric row; ``symmetric``/``uniform`` the symmetric
rows (the code's "sym" draws the new label from all K classes, our ``uniform``).

Reported to the engine: ``selected`` = network 1's labelled set (w⁽²⁾ > τ_p), ``weights`` and
``score`` = w⁽²⁾ (the clean probability it trains with); nothing during warm-up.

Departures from the official code:

* **Both networks train in the same step**, each with the partner's division (the code trains
  net 1 for a whole epoch, then net 2); one optimizer covers both.
* **The batch is split, not two loaders**: each engine batch is divided into its labelled and
  unlabelled samples (so an epoch visits every sample once; the code iterates over the labelled
  set and draws as many unlabelled samples). Both networks see the same batch; each uses its
  partner's division of it.
* The second view is a second augmentation of the same images by the engine's loader (random
  crop + flip with ``--augment``; without it the two views are equal).
* The partner's co-guess runs in training mode (the code sets the partner to eval mode).
* The GMM is initialized deterministically (a few 1-D k-means steps from the extremes) instead
  of sklearn's k-means with a random seed, so a resumed run reproduces it.
* The warm-up loss uses the engine's batch size (the code doubles it for warm-up).
* The MixMatch batch is both views of every sample of the engine's batch, the labelled rows
  marked by a mask (the code concatenates the labelled and the unlabelled parts in that
  order): the same rows and the same mixing with a random partner row, without reading the
  parts' sizes back to the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import (
    METHODS,
    ConfigError,
    Method,
    StepOutput,
    batch_ce,
    batch_mean,
    current_step,
    gather_batch,
    global_batch_sum,
    global_term,
    local_part,
)

#: (family, noise, rate) → (λ_u, τ_p): the paper's per-setting hyper-parameters.
PRESETS: dict[tuple[str, str, float], tuple[float, float]] = {
    ("cifar10", "sym", 0.2): (0.0, 0.5),
    ("cifar10", "sym", 0.5): (25.0, 0.5),
    ("cifar10", "sym", 0.8): (25.0, 0.5),
    ("cifar10", "sym", 0.9): (50.0, 0.6),
    ("cifar10", "asym", 0.4): (0.0, 0.5),
    ("cifar100", "sym", 0.2): (25.0, 0.5),
    ("cifar100", "sym", 0.5): (150.0, 0.5),
    ("cifar100", "sym", 0.8): (150.0, 0.5),
    ("cifar100", "sym", 0.9): (150.0, 0.6),
}
ASYMMETRIC_KINDS = ("pair", "asymmetric", "asym")


def preset_for(num_classes: int, noise: str | None, rate: float | None) -> tuple[float, float]:
    """(λ_u, τ_p) of :data:`PRESETS` for K classes, a noise kind and rate (nearest rate)."""
    family = "cifar10" if num_classes <= 10 else "cifar100"
    kind = "asym" if noise in ASYMMETRIC_KINDS else "sym"
    rows = [(r, v) for (f, k, r), v in PRESETS.items() if f == family and k == kind]
    if not rows:  # CIFAR-100 asymmetric is not in the paper: use CIFAR-10's
        rows = [(r, v) for (f, k, r), v in PRESETS.items() if k == kind]
    rate = 0.5 if rate is None else float(rate)
    return min(rows, key=lambda rv: (abs(rv[0] - rate), rv[0]))[1]


@torch.no_grad()
def gmm_clean_probability(
    loss: torch.Tensor, *, max_iter: int = 10, tol: float = 1e-2, reg_covar: float = 5e-4
) -> torch.Tensor:
    """(N,) posterior of the lower-mean component of a 2-component 1-D GMM fitted to ``loss``.

    EM as sklearn's ``GaussianMixture(2, max_iter=10, tol=1e-2, reg_covar=5e-4)`` (full
    covariance = variance in 1-D; stops when the mean log-likelihood gains less than ``tol``),
    initialized from a 1-D 2-means split started at the extremes. Float64 on ``loss``'s device.
    """
    x = loss.detach().double().flatten()
    mu = torch.stack([x.min(), x.max()])
    for _ in range(10):  # 2-means initialization
        r = (
            (x[:, None] - mu).abs().argmin(1)[:, None] == torch.arange(2, device=x.device)
        ).double()
        mu = (r * x[:, None]).sum(0) / r.sum(0).clamp_min(1)
    nk = r.sum(0) + 10 * torch.finfo(torch.float64).eps
    var = (r * (x[:, None] - mu) ** 2).sum(0) / nk + reg_covar
    pi = nk / len(x)
    prev = None
    for _ in range(max_iter):
        log_p = (
            pi.log() - 0.5 * (2 * torch.pi * var).log() - 0.5 * (x[:, None] - mu) ** 2 / var
        )  # (N, 2)
        ll = torch.logsumexp(log_p, 1)
        r = (log_p - ll[:, None]).exp()
        nk = r.sum(0) + 10 * torch.finfo(torch.float64).eps
        mu = (r * x[:, None]).sum(0) / nk
        var = (r * (x[:, None] - mu) ** 2).sum(0) / nk + reg_covar
        pi = nk / len(x)
        cur = float(ll.mean())
        if prev is not None and abs(cur - prev) < tol:
            break
        prev = cur
    log_p = pi.log() - 0.5 * (2 * torch.pi * var).log() - 0.5 * (x[:, None] - mu) ** 2 / var
    post = (log_p - torch.logsumexp(log_p, 1, keepdim=True)).exp()
    return post[:, int(mu.argmin())].float()


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^{1/T} / Σ_k p^{1/T} per row of (b, K) probabilities."""
    pt = p ** (1.0 / temperature)
    return pt / pt.sum(1, keepdim=True)


def mixmatch_loss(
    logits: torch.Tensor, targets: torch.Tensor, labelled: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_X, L_U, R) of DivideMix's SemiLoss on mixed logits/targets (n, K).

    ``labelled``: (n,) bool, the rows of the labelled part (or an int: the first that many
    rows, as the code's ``logits_x = logits[:batch_size*2]``). Masks and device counts only,
    so the split needs no host sync; empty parts give 0."""
    logp = logits.float().log_softmax(1)
    probs = logp.exp()
    n, k = logits.shape
    if not torch.is_tensor(labelled):
        labelled = torch.arange(n, device=logits.device) < labelled
    m = labelled.float()
    if current_step() is not None:  # W > 1: this rank's rows of the global mixed batch
        return _mixmatch_loss_share(logp, probs, targets, m)
    nx = m.sum()
    lx = -((targets * logp).sum(1) * m).sum() / nx.clamp_min(1)
    lu = (((probs - targets) ** 2).sum(1) * (1 - m)).sum() / ((n - nx) * k).clamp_min(1)
    prior = torch.full((k,), 1.0 / k, device=logits.device)
    penalty = (prior * (prior / probs.mean(0)).log()).sum()
    return lx, lu, penalty


def _mixmatch_loss_share(logp, probs, targets, m):
    """W > 1: this rank's shares of L_X, L_U (sums over its rows / the global counts) and of
    the prior penalty R (on the global mean prediction; one fused all-reduce for the counts
    and the mean)."""
    k = probs.shape[1]
    ones = torch.ones_like(m)[:, None]
    tot = global_batch_sum(torch.cat([probs, m[:, None], ones], 1))  # (K + 2,) global sums
    nx, n = tot[k].detach(), tot[k + 1].detach()
    lx = -((targets * logp).sum(1) * m).sum() / nx.clamp_min(1)
    lu = (((probs - targets) ** 2).sum(1) * (1 - m)).sum() / ((n - nx) * k).clamp_min(1)
    prior = torch.full((k,), 1.0 / k, device=probs.device)
    penalty = global_term((prior * (prior / (tot[:k] / n)).log()).sum())
    return lx, lu, penalty


def linear_rampup(current: float, warm_up: int, length: int = 16) -> float:
    """clip((current − warm_up)/length, 0, 1), the code's λ_u ramp-up factor."""
    return min(max((current - warm_up) / length, 0.0), 1.0)


@METHODS.register("dividemix")
class DivideMix(Method):
    """DivideMix (ICLR 2020): GMM co-divide into labelled/unlabelled, then MixMatch on both."""

    name = "dividemix"
    distributed = True  # W > 1: co-divide replicated per rank; MixMatch over the global batch
    needs = frozenset({"in_memory"})  # the second view is drawn from the raw images

    @dataclass
    class Config:
        warm_up: int = 10
        """Epochs of plain cross-entropy before the first division (CIFAR-10 10; CIFAR-100 30)."""
        lambda_u: float | None = None
        """λ_u, weight of the unlabelled loss (None: the preset for the noise; see PRESETS)."""
        p_threshold: float | None = None
        """τ_p, clean-probability threshold of the labelled set (None: the preset, 0.5/0.6)."""
        temperature: float = 0.5
        """T, sharpening temperature."""
        alpha: float = 4.0
        """α of MixMatch's Beta(α, α)."""
        rampup_epochs: int = 16
        """Epochs of the linear ramp-up of λ_u after warm-up (the code's rampup_length)."""
        loss_window: int | None = None
        """Epochs of normalized losses averaged for the GMM (None: 5 at noise ≥ 0.9, else 1)."""
        conf_penalty: bool | None = None
        """Confidence penalty −H(p) in warm-up (None: for pair/asymmetric noise, as the code)."""

    WINDOW = 5  # epochs of loss vectors kept (the code's history[-5:])

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        c = config
        cfg = ctx.config
        noise = getattr(cfg, "noise", None)
        # the paper's rows are keyed by the nominal rate; label files / no noise: the realized one
        nominal = noise in ("symmetric", "uniform", *ASYMMETRIC_KINDS)
        rate = cfg.noise_rate if nominal else ctx.noise_rate
        lam_u, p_thr = preset_for(ctx.num_classes, noise, rate)
        self.lambda_u = lam_u if c.lambda_u is None else float(c.lambda_u)
        self.p_threshold = p_thr if c.p_threshold is None else float(c.p_threshold)
        window = c.loss_window or (5 if rate is not None and rate >= 0.9 else 1)
        self.window = window
        self.penalize = c.conf_penalty if c.conf_penalty is not None else noise in ASYMMETRIC_KINDS
        if c.warm_up < 0 or not 0 < self.p_threshold < 1 or c.temperature <= 0 or c.alpha <= 0:
            raise ConfigError(
                "dividemix: need warm_up ≥ 0, 0 < p_threshold < 1, temperature > 0, alpha > 0; "
                f"got warm_up={c.warm_up}, p_threshold={self.p_threshold}, "
                f"temperature={c.temperature}, alpha={c.alpha}"
            )
        if not 1 <= window <= self.WINDOW or self.lambda_u < 0 or c.rampup_epochs < 1:
            raise ConfigError(
                f"dividemix: need 1 ≤ loss_window ≤ {self.WINDOW}, lambda_u ≥ 0, "
                f"rampup_epochs ≥ 1; got {window}, {self.lambda_u}, {c.rampup_epochs}"
            )
        self.models = {"net1": ctx.make_model(), "net2": ctx.make_model()}
        self._alpha = torch.tensor(float(config.alpha), device=ctx.device)  # MixMatch α
        n, dev = ctx.num_samples, ctx.device
        self.prob = torch.ones(2, n, device=dev)  # clean probability by network 1, 2
        self.loss_hist = torch.zeros(2, self.WINDOW, n, device=dev)  # normalized losses
        self.num_hist = 0  # epochs of losses recorded
        self.state_names = ("prob", "loss_hist", "num_hist")
        self._step = 0  # step within the epoch (for the λ_u ramp-up)

    # -- co-divide --------------------------------------------------------------------------
    @torch.no_grad()
    def train_losses(self, net: torch.nn.Module) -> torch.Tensor:
        """(N,) cross-entropy of ``net`` on every training sample (eval mode, no augmentation)."""
        loader = self.ctx.loader
        view = loader.subset(None).eval_view(max(loader.batch_size, 1024))
        was = net.training
        net.eval()
        out = torch.zeros(self.ctx.num_samples, device=self.ctx.device)
        for b in view.epoch(0):
            out[b.index] = F.cross_entropy(net(b.x).float(), b.labels, reduction="none")
        net.train(was)
        return out

    def on_epoch_start(self, epoch):
        self._step = 0
        if epoch < self.config.warm_up:
            return
        slot = self.num_hist % self.WINDOW
        for a, net in enumerate(self.models.values()):
            loss = self.train_losses(net)
            self.loss_hist[a, slot] = (loss - loss.min()) / (loss.max() - loss.min()).clamp_min(
                1e-12
            )
        self.num_hist += 1
        w = min(self.window, self.num_hist)
        last = [(self.num_hist - 1 - j) % self.WINDOW for j in range(w)]
        for a in range(2):
            self.prob[a] = gmm_clean_probability(self.loss_hist[a, last].mean(0))

    def on_epoch_end(self, epoch):
        if epoch < self.config.warm_up:
            return {}
        labelled = (self.prob > self.p_threshold).float().mean(1).tolist()
        return {
            "lambda_u": self.lambda_u,
            "p_threshold": self.p_threshold,
            "labelled_frac_net1": labelled[1],  # the set network 1 trains on (from net 2)
            "labelled_frac_net2": labelled[0],
        }

    # -- the step ---------------------------------------------------------------------------
    def _second_view(self, batch) -> torch.Tensor:
        loader = self.ctx.loader
        if loader is None or not loader.augment:
            return batch.x
        sh = current_step()  # W > 1: the global batch's draws, this rank's rows
        idx = batch.index if sh is None else batch.global_index
        raw = loader.x[idx.to(loader.storage)].to(batch.x.device)
        return local_part(loader.transform(raw))

    def training_step(self, batch, epoch):
        nets = list(self.models.values())
        y = batch.labels
        if epoch < self.config.warm_up:
            loss, logits1 = 0.0, None
            for net in nets:
                z = net(batch.x)
                loss = loss + batch_ce(z.float(), y)
                if self.penalize:  # NegEntropy: mean Σ p log p
                    p = z.float().softmax(1)
                    loss = loss + batch_mean((p * p.clamp_min(1e-12).log()).sum(1))
                logits1 = z if logits1 is None else logits1
            return StepOutput(loss=loss, logits=logits1)

        steps = len(self.ctx.loader) if self.ctx.loader is not None else 1
        t = epoch + self._step / steps
        self._step += 1
        lam_u = self.lambda_u * linear_rampup(t, self.config.warm_up, self.config.rampup_epochs)
        x1, x2 = batch.x, self._second_view(batch)
        with torch.no_grad():  # both networks on both views: refinement and co-guessing
            z = [[net(x1), net(x2)] for net in nets]
            p = [(za.float().softmax(1) + zb.float().softmax(1)) / 2 for za, zb in z]
        loss = 0.0
        for a in range(2):
            b = 1 - a
            w = self.prob[b, batch.index]
            lab = w > self.p_threshold
            loss = loss + self._semi_loss(nets[a], x1, x2, y, w, lab, p[a], p[b], lam_u)
        w2 = self.prob[1, batch.index]
        return StepOutput(
            loss=loss, logits=z[0][0], selected=w2 > self.p_threshold, weights=w2, score=w2
        )

    def _semi_loss(self, net, x1, x2, y, w, lab, p_own, p_other, lam_u) -> torch.Tensor:
        """One network's MixMatch loss on the batch split by its partner's division ``lab``."""
        c = self.config
        k = self.ctx.num_classes
        with torch.no_grad():
            onehot = F.one_hot(y, k).float()
            wx = w[:, None]
            tx = sharpen(wx * onehot + (1 - wx) * p_own, c.temperature)  # co-refinement
            tu = sharpen((p_own + p_other) / 2, c.temperature)  # co-guessing
            # both views of every sample, each row with its part's target: the labelled rows
            # are marked, not gathered, so no count is read back to the host
            inputs = torch.cat([x1, x2])
            t = torch.where(lab[:, None], tx, tu)
            targets = torch.cat([t, t])
            is_lab = torch.cat([lab, lab])
            mix = torch.distributions.Beta(self._alpha, self._alpha, validate_args=False).sample()
            mix = torch.maximum(mix, 1 - mix)
            sh = current_step()
            if sh is None:
                perm = torch.randperm(len(inputs), device=x1.device)
                x_mix = inputs * mix + inputs[perm] * (1 - mix)
                t_mix = targets * mix + targets[perm] * (1 - mix)
            else:  # W > 1: partners drawn over both views of the global batch (2n rows)
                n = sh.global_size
                perm = torch.randperm(2 * n, device=x1.device)
                mine = torch.arange(n, device=x1.device)[sh.part]
                mine = perm[torch.cat([mine, mine + n])]  # partners of this rank's 2b rows
                xg = torch.cat([gather_batch(x1), gather_batch(x2)])
                tg = gather_batch(t)
                x_mix = inputs * mix + xg[mine] * (1 - mix)
                t_mix = targets * mix + torch.cat([tg, tg])[mine] * (1 - mix)
        lx, lu, pen = mixmatch_loss(net(x_mix), t_mix, is_lab)
        return lx + lam_u * lu + pen

    def eval_logits(self, x):
        z1, z2 = self.models["net1"](x), self.models["net2"](x)
        return {"ensemble": z1 + z2, "net1": z1, "net2": z2}
