"""``sop``: sparse over-parameterization (Liu et al., ICML 2022), the per-sample noise terms.

The label noise of sample i is modelled as a sparse vector s_i = u_i²·y_i − v_i²⊙(1 − y_i)
(u: (N, 1), v: (N, K), y_i the one-hot given label), learned jointly with the network f:

    p̂_i = clamp(softmax(f(x_i)) + u_i² y_i − sg(v_i²)(1 − y_i), 1e-4),  p̂_i ← p̂_i / ‖p̂_i‖₁
    L_CE  = mean_i −Σ_k y_ik log p̂_ik                    (network and u)
    L_MSE = mean_i ‖onehot(argmax f(x_i)) + sg(u_i²) y_i − v_i²(1 − y_i) − y_i‖²   (v only)

(sg = stop-gradient; u_i², v_i² are clamped to [0, 1 − 1e-4]). u and v start at N(0, 10⁻⁸)
and grow only where the network cannot fit the given label: the implicit regularization of
gradient descent on the over-parameterized term keeps s sparse. The clean-label estimate is
ŷ_i = y_i − s_i; a sample counts as clean while ŷ_i keeps at least half of its given label
(u_i² < 1/2; the paper defines no selection, this is our reading for label precision/recall).

**u and v have their own optimizer** (the escape hatch): plain SGD with their own learning
rates lr_u, lr_v, no momentum and no weight decay, as the code's ``optimizer_overparametrization``.
``training_step`` computes the gradients of the batch's u, v rows with ``torch.autograd.grad``
from the same forward pass and updates those rows in place; the engine's optimizer updates the
network from the returned loss. Because SGD without momentum or decay touches only the rows of
the batch, this equals the code's full-size ``nn.Parameter`` u, v with their own optimizer.
The network loss is computed with the u, v before the update, as in the code (both optimizers
step after one backward pass). u and v are per-sample state (``state_names``): checkpointed and
restored bit for bit.

Follows ``shengliu66/SOP`` (``model/loss.py``: ``overparametrization_loss``; ``train.py``;
``trainer/trainer.py``). Departures:

* separate lr_u and lr_v as in the paper (Table A.1) and the README's ``--lr_u/--lr_v``; the
  latest ``loss.py`` instead multiplies L_MSE by ``ratio_reg = 100`` under one learning rate
  for both (pass ``lr_v`` = 100 × lr_u for that);
* defaults lr_u = lr_v = 10 [the paper's CIFAR-10 symmetric setting as we read Table A.1; not
  checked against the PDF]; the README's CIFAR-100 example uses lr_u 1, lr_v 10;
* the engine's optimizer and schedule for the network (the code: SGD 0.02, momentum 0.9,
  cosine to 2e-4 over 300 epochs).

``sop-plus`` (``methods/sop_plus.py``) adds the consistency and class-balance terms.
Reported to the engine: ``selected`` = u_i² < 1/2, ``score`` = 1 − u_i² (the u before the
step). u and v grow geometrically, by a factor of about 1 + c·lr/b per visit of the sample
(b the batch size), from 10⁻⁸: SOP needs tens of epochs before s moves (the code trains 300);
in a short run it behaves like cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import METHODS, ConfigError, Method, StepOutput, batch_mean, current_step

EPS = 1e-4


def sop_terms(
    u_b: torch.Tensor, v_b: torch.Tensor, y1h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(U², V²): (b, K) clamped u²·y and v²·(1 − y) of batch rows u_b (b, 1), v_b (b, K)."""
    us = (u_b**2 * y1h).clamp(0, 1 - EPS)
    vs = (v_b**2 * (1 - y1h)).clamp(0, 1 - EPS)
    return us, vs


def sop_prediction(logits: torch.Tensor, us: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
    """(b, K) p̂ = normalize₁(clamp(softmax(f) + U² − sg(V²), 1e-4)), clamped to [1e-4, 1]."""
    p = torch.softmax(logits.float(), 1)
    pred = (p + us - vs.detach()).clamp_min(EPS)
    return F.normalize(pred, p=1, dim=1, eps=EPS).clamp(EPS, 1.0)


def sop_losses(
    logits: torch.Tensor, u_b: torch.Tensor, v_b: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The SOP losses of one batch.

    Args:
        logits: (b, K) network outputs.  u_b: (b, 1), v_b: (b, K) the batch's rows of u, v
            (leaves with ``requires_grad``).  labels: (b,) given labels.

    Returns:
        ``(ce, mse, pred)``: the scalar L_CE (network and u), the scalar L_MSE (v only) and
        the (b, K) corrected prediction p̂.
    """
    y1h = F.one_hot(labels, logits.shape[1]).float()
    us, vs = sop_terms(u_b, v_b, y1h)
    pred = sop_prediction(logits, us, vs)
    ce = batch_mean(-(y1h * pred.log()).sum(1))
    hard = F.one_hot(logits.detach().argmax(1), logits.shape[1]).float()
    sh = current_step()  # W > 1: this rank's share of the global batch's means
    mse = ((hard + us.detach() - vs - y1h) ** 2).sum() / (
        len(labels) if sh is None else sh.global_size
    )
    return ce, mse, pred


@METHODS.register("sop")
class SOP(Method):
    """SOP (ICML 2022): per-sample sparse noise terms u²y − v²(1−y) learned with the network."""

    name = "sop"
    distributed = True  # W > 1: u, v rows synced by the engine; the u/v steps use 1/n_global

    @dataclass
    class Config:
        lr_u: float = 10.0
        """Learning rate of u (plain SGD; paper CIFAR-10 10, README CIFAR-100 1)."""
        lr_v: float = 10.0
        """Learning rate of v (plain SGD; paper CIFAR-10 10, README CIFAR-100 10)."""
        init_std: float = 1e-8
        """Standard deviation of the N(0, σ²) initialization of u and v (code 1e-8)."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self._check()
        self.models = {"net": ctx.make_model()}
        g = torch.Generator().manual_seed(ctx.seed + 4242)
        n, k = ctx.num_samples, ctx.num_classes
        self.u = (torch.randn(n, 1, generator=g) * config.init_std).to(ctx.device)
        self.v = (torch.randn(n, k, generator=g) * config.init_std).to(ctx.device)
        self.state_names = ("u", "v")

    def _check(self) -> None:
        c = self.config
        if c.lr_u < 0 or c.lr_v < 0 or c.init_std < 0:
            raise ConfigError(
                f"{self.name}: need lr_u ≥ 0, lr_v ≥ 0, init_std ≥ 0; got lr_u={c.lr_u}, "
                f"lr_v={c.lr_v}, init_std={c.init_std}"
            )

    def extra_loss(self, batch, logits, pred) -> torch.Tensor | None:
        """Terms SOP+ adds to the network/u loss (None for SOP)."""
        return None

    def training_step(self, batch, epoch):
        idx, y = batch.index, batch.labels
        logits = self.models["net"](batch.x)
        u_b = self.u[idx].clone().requires_grad_(True)
        v_b = self.v[idx].clone().requires_grad_(True)
        ce, mse, pred = sop_losses(logits, u_b, v_b, y)
        loss = ce
        extra = self.extra_loss(batch, logits, pred)
        if extra is not None:
            loss = loss + extra
        (g_u,) = torch.autograd.grad(loss, u_b, retain_graph=True)
        (g_v,) = torch.autograd.grad(mse, v_b)
        with torch.no_grad():  # u, v's own SGD step (no momentum, no decay): batch rows only
            self.u[idx] = u_b.detach() - self.config.lr_u * g_u
            self.v[idx] = v_b.detach() - self.config.lr_v * g_v
            u2 = (u_b.detach().squeeze(1) ** 2).clamp(0, 1 - EPS)  # the u² this step used
            selected = u2 < 0.5  # ŷ_y = 1 − u² keeps at least half of the given label
            score = 1 - u2
        return StepOutput(loss=loss, logits=logits, selected=selected, score=score)

    def on_epoch_end(self, epoch):
        u2 = (self.u.squeeze(1) ** 2).clamp(0, 1 - EPS)
        return {"sop_u2_mean": float(u2.mean()), "sop_u2_gt_half": float((u2 > 0.5).float().mean())}
