"""``l2r``: Learning to Reweight Examples (Ren, Zeng, Yang, Urtasun, ICML 2018), as
re-implemented in the IEG repository (``ieg/models/l2rmodel.py``).

Per step, with a noisy batch (x_i, ỹ_i), i = 1..B and a clean probe batch (x_j^p, y_j^p):

1. ℓ_i = CE(f(x_i; θ), ỹ_i) from the ordinary training forward; ε = ε₀ (0), requiring grad.
2. Look-ahead θ' = θ − α·∇_θ[Σ_i ε_i ℓ_i + ½λ‖θ‖²], α = ``meta_stepsize`` (0.1), no momentum
   (``meta_momentum`` 0; IEG uses the optimizer's momentum buffer, see ``ieg``).
3. Meta loss L_p(θ') = mean_j CE(f(x_j^p; θ'), y_j^p) + ½λ‖θ'‖² with BatchNorm in training mode
   (batch statistics of the probe batch; the look-ahead forward does not touch the running
   statistics: it runs on cloned buffers).
4. w_i = max(−∂L_p/∂ε_i, 0) / (Σ_k max(−∂L_p/∂ε_k, 0) + 1e-5): at ε = 0 and λ = 0 this is
   α·⟨∇_θ L_p(θ), ∇_θ ℓ_i(θ)⟩, clipped and normalized (α cancels up to the 1e-5).
5. Loss Σ_i w_i ℓ_i (w constant); weight decay comes from the optimizer.

λ is the optimizer's weight decay (``meta_weight_decay`` false leaves it out of steps 2–3: the
original L2R code). The meta-gradient is built as in ``spec/distributed.md`` §2.6: the look-ahead
gradient is taken on the graph of the training forward with ``torch.autograd.grad(...,
create_graph=True)``, the probe forward runs the look-ahead weights through
``torch.func.functional_call`` (any registered model, BatchNorm buffers included), and
∂L_p/∂ε is a second ``autograd.grad`` (a vector–Jacobian product through θ'). So one training
forward serves both the meta step and the loss, and under DDP neither gradient triggers the
reducer.

Reported to the engine: ``weights`` w, ``selected`` w > 0 (so label precision/recall score the
examples L2R keeps) and ``score`` −∂L_p/∂ε (higher = more helpful to the probe). Evaluation
uses an EMA (0.999) of the weights, as the IEG repository does.

Under torchrun, ``meta_sync`` chooses the rule: ``"exact"`` (default, ``spec/distributed.md``
§2.6: the 1-process weights of the global batch) or ``"per-replica"`` (google-research/ieg's
``l2rmodel.py`` under MirroredStrategy: each rank's meta step on its own train shard and its
own share of the probe batch, no collective, weights normalised over the rank's rows, loss
divided by W so DDP's gradient is the ranks' mean). One process: both are the same code.

This module also holds the pieces IEG shares: :func:`meta_gradients` and :class:`ProbeStream`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import forward_ad
from torch.func import functional_call
from torch.nn.parallel import DistributedDataParallel

from ..data.loader import Batch, Loader
from ..data.sharded import shard_sizes
from ..distributed import all_reduce_sum, rank, replica_local, world
from .base import (
    METHODS,
    ConfigError,
    Method,
    StepOutput,
    current_step,
    global_sum,
)
from .ema import NetEMA

#: Added to the sum of the clipped weights before normalizing (IEG's code).
NORM_EPS = 1e-5


class ProbeStream:
    """An endless stream of probe batches from a loader, resumable from a step counter.

    Batch k of the stream is batch ``k mod len(loader)`` of the loader's epoch
    ``k div len(loader)``; ``step`` (saved in checkpoints) is all the state.
    """

    def __init__(self, loader: Loader):
        self.loader = loader
        self.step = 0
        self._it = None
        self._at: int | None = None  # the stream position self._it yields next

    def next(self) -> Batch:
        n = len(self.loader)
        if n == 0:
            raise ConfigError("the probe set is empty")
        epoch, k = divmod(self.step, n)
        if self._it is None or self._at != self.step:
            self._it = self.loader.epoch(epoch)
            for _ in range(k):
                next(self._it)
        batch = next(self._it)
        self.step += 1
        self._at = self.step if k + 1 < n else None
        return batch


class _MetaCache:
    """What the meta step of one network reuses between steps: its trainable parameters, the
    optimizer's (weight decay, momentum buffer) per parameter, and scratch copies of its buffers
    (refreshed in place each step instead of cloned).

    The optimizer info is rebuilt only when it may have changed: another optimizer, a buffer
    not created yet (before the first step), or a replaced state (``load_state_dict``).
    """

    def __init__(self, net: nn.Module):
        self.named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        self.params = [p for _, p in self.named]
        self.buffer_names = [n for n, _ in net.named_buffers()]
        self.scratch = [b.clone() for _, b in net.named_buffers()]
        self._opt_key: tuple | None = None
        self._info: list[tuple[float, torch.Tensor | None]] = []

    def buffers(self, net: nn.Module) -> dict[str, torch.Tensor]:
        live = [b for _, b in net.named_buffers()]
        if len(live) != len(self.scratch) or any(
            s.shape != b.shape or s.dtype != b.dtype for s, b in zip(self.scratch, live)
        ):
            self.scratch = [b.clone() for b in live]
        elif live:
            torch._foreach_copy_(self.scratch, live)
        return dict(zip(self.buffer_names, self.scratch))

    def info(self, optimizer, default_wd: float) -> list[tuple[float, torch.Tensor | None]]:
        if optimizer is None:
            return [(default_wd, None) for _ in self.params]
        first = optimizer.state.get(self.params[0], {}).get("momentum_buffer")
        key = (id(optimizer), default_wd, id(first))
        if key != self._opt_key or any(buf is None for _, buf in self._info):
            self._info = _optimizer_info(optimizer, self.params, default_wd)
            self._opt_key = key
        return self._info


_CACHES: weakref.WeakKeyDictionary[nn.Module, _MetaCache] = weakref.WeakKeyDictionary()


def _meta_cache(net: nn.Module) -> _MetaCache:
    cache = _CACHES.get(net)
    if cache is None or len(cache.params) != sum(1 for p in net.parameters() if p.requires_grad):
        cache = _CACHES[net] = _MetaCache(net)
    return cache


def _optimizer_info(optimizer, params: Sequence[nn.Parameter], default_wd: float):
    """(weight decay, momentum buffer or None) of each parameter, from the optimizer."""
    wd = {id(p): default_wd for p in params}
    if optimizer is None:
        return [(default_wd, None) for _ in params]
    for group in optimizer.param_groups:
        for p in group["params"]:
            wd[id(p)] = float(group.get("weight_decay", 0.0))
    out = []
    for p in params:
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        out.append((wd[id(p)], buf))
    return out


def meta_gradients(
    net: nn.Module,
    lookahead_loss: Callable[..., torch.Tensor],
    coeffs: Sequence[torch.Tensor],
    probe_x: torch.Tensor,
    probe_y: torch.Tensor,
    *,
    step_size: float,
    momentum: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    weight_decay: bool | float = True,
    train_x: torch.Tensor | None = None,
    train_logits: torch.Tensor | None = None,
    zero_at_coeffs: bool = False,
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
    """∂L_probe(θ')/∂c for each coefficient tensor c in ``coeffs``, θ' one virtual SGD step away.

    Two exact ways to the same derivative. With ``train_x`` and ``train_logits`` z (the
    training forward's input and output) and no active dropout: since the coefficients enter θ'
    only through ∇_θ L_look = Jᵀ ∂L_look/∂z (J = ∂z/∂θ; weight decay and momentum do not depend
    on them), ∂L_p/∂c = −α ∂/∂c ⟨g_p, ∇_θ L_look⟩ = −α ∂/∂c ⟨∂L_look/∂z, J g_p⟩ with
    g_p = ∇_θ' L_p(θ') taken at a detached θ', and J g_p one forward-mode pass
    (``torch.autograd.forward_ad``) over the training batch: no double backward through the network
    (about half the CPU time of the meta step for cnn-small). Otherwise: ∇_θ L_look with
    ``create_graph=True`` and a second ``autograd.grad`` through θ' (double backward).

    Args:
        net: the live network (its parameters θ).
        lookahead_loss: ``lookahead_loss(*coeffs) -> scalar``, built on the graph of ``net``'s
            training forward (e.g. Σ_i ε_i ℓ_i).
        coeffs: leaf tensors with ``requires_grad`` (ε, λ, ...).
        probe_x, probe_y: the clean probe batch.
        step_size: α of the virtual step θ' = θ − α·(momentum·m + ∇_θ L_look).
        momentum: factor of the optimizer's momentum buffer m in the virtual step (IEG's
            ``meta_momentum``; 0: none, L2R). Parameters without a buffer yet use m = 0.
        optimizer: the engine's optimizer (momentum buffers and per-group weight decay).
        weight_decay: True: add ½λ‖θ‖² to the look-ahead loss and ½λ‖θ'‖² to the probe loss with
            the optimizer's λ (IEG's code); False: none; a float: that λ.
        train_x: (B, ...) the training batch ``net`` ran on (for the forward-mode path).
        train_logits: (B, K) that forward's output, on which ``lookahead_loss`` is built.
        zero_at_coeffs: the look-ahead loss has zero gradient at the given coefficients (L2R's
            ε₀ = 0: Σ_i ε_i ℓ_i), so the virtual step is weight decay and momentum only and
            needs no backward through the training forward (forward-mode path).

    Returns:
        (gradients w.r.t. each coefficient, the probe loss at θ' (detached), probe logits at θ'
        (detached)).
    """
    sh = current_step()  # W > 1: the spec's "exact" mode (distributed.md §2.6)
    if isinstance(net, DistributedDataParallel):
        net = net.module  # the look-ahead runs the plain module (DDP's reducer stays out)
    if sh is not None:  # this rank's share of the (replicated) probe batch
        probe_n, (probe_x, probe_y) = len(probe_y), probe_share(probe_x, probe_y)
    cache = _meta_cache(net)
    named, params = cache.named, cache.params
    fixed = isinstance(weight_decay, float) and not isinstance(weight_decay, bool)
    info = cache.info(optimizer, float(weight_decay) if fixed else 0.0)
    if fixed:
        info = [(float(weight_decay), buf) for _, buf in info]
    elif not weight_decay:
        info = [(0.0, buf) for _, buf in info]

    def decay(tensors) -> torch.Tensor | float:
        terms = [0.5 * wd * t.float().pow(2).sum() for t, (wd, _) in zip(tensors, info) if wd]
        out = torch.stack(terms).sum() if terms else 0.0
        return out if sh is None else out / world()  # W > 1: each rank's share of a replica

    def probe_loss(logits) -> torch.Tensor:  # W > 1: this rank's share of the probe mean
        if sh is None:
            return F.cross_entropy(logits.float(), probe_y)
        return F.cross_entropy(logits.float(), probe_y, reduction="sum") / max(1, probe_n)

    look = lookahead_loss(*coeffs) + decay(params)
    if train_x is not None and train_logits is not None and not _has_active_dropout(net):
        return _meta_gradients_jvp(
            net, cache, look, coeffs, probe_x, probe_y, train_x, train_logits,
            step_size=step_size, momentum=momentum, info=info, decay=decay,
            zero_at_coeffs=zero_at_coeffs, probe_loss=probe_loss, multi=sh is not None,
        )  # fmt: skip
    grads = torch.autograd.grad(look, params, create_graph=True, allow_unused=True)
    if sh is not None:  # value: the global gradient; derivative: through this rank's ε only
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        total = _all_reduce_list([g.detach() for g in grads])
        grads = [g + (t - g).detach() for g, t in zip(grads, total)]
    lookahead: dict[str, torch.Tensor] = {}
    for (name, p), g, (_, buf) in zip(named, grads, info):
        if g is None:
            g = torch.zeros_like(p)
        if momentum and buf is not None:
            g = g + momentum * buf.detach()
        lookahead[name] = p - step_size * g
    # copies of the buffers: the virtual forward uses the probe batch's statistics (train
    # mode) and leaves the live running statistics alone (scratch tensors reused every step)
    buffers = cache.buffers(net)
    logits = functional_call(net, {**lookahead, **buffers}, (probe_x,))
    meta = probe_loss(logits) + decay(list(lookahead.values()))
    if sh is not None:  # ∂L_p/∂θ' all-reduced, then pulled back through this rank's θ'(ε)
        theta = list(lookahead.values())
        g_p = torch.autograd.grad(meta, theta, allow_unused=True)
        g_p = _all_reduce_list(
            [torch.zeros_like(t) if g is None else g for t, g in zip(theta, g_p)]
        )
        live = [(t, g) for t, g in zip(theta, g_p) if t.requires_grad]
        out = torch.autograd.grad(
            [t for t, _ in live], list(coeffs), [g for _, g in live], allow_unused=True
        )
        out = tuple(torch.zeros_like(c) if g is None else g for c, g in zip(coeffs, out))
        return out, all_reduce_sum(meta.detach()), logits.detach()
    out = torch.autograd.grad(meta, list(coeffs), allow_unused=True)
    out = tuple(torch.zeros_like(c) if g is None else g for c, g in zip(coeffs, out))
    return out, meta.detach(), logits.detach()


def probe_share(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This rank's rows of each (P, ...) tensor of the replicated probe batch (the split of
    ``shard_sizes(P, W)``: rank r gets rows Σ sizes[:r] … Σ sizes[:r+1] − 1); the tensors
    themselves with one process."""
    if world() == 1:
        return tensors
    sizes = shard_sizes(len(tensors[0]), world())
    part = slice(sum(sizes[: rank()]), sum(sizes[: rank() + 1]))
    return tuple(t[part] for t in tensors)


def replica_probe(method: Method, probe: Batch) -> tuple[Batch, bool]:
    """``meta_sync="per-replica"`` in a multi-process step: (this rank's share of the probe
    batch, True), the caller then runs its step under ``replica_local()`` and divides its loss
    by W; else (the probe batch, False)."""
    if method.config.meta_sync != "per-replica" or current_step() is None:
        return probe, False
    if len(probe.labels) < world():
        raise ConfigError(
            f"meta_sync per-replica gives each of the {world()} processes its share of the "
            f"probe batch, which has {len(probe.labels)}: use a larger probe batch or "
            "meta_sync exact"
        )
    return Batch(*probe_share(probe.index, probe.x, probe.labels)), True


def _all_reduce_list(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Σ over ranks of each tensor (one flat all-reduce), returned detached."""
    flat = all_reduce_sum(torch.cat([t.detach().reshape(-1) for t in tensors]))
    out, at = [], 0
    for t in tensors:
        out.append(flat[at : at + t.numel()].view_as(t))
        at += t.numel()
    return out


def _has_active_dropout(net: nn.Module) -> bool:
    """A recomputed forward would draw other dropout masks: use the double-backward path."""
    return any(
        isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 and m.training
        for m in net.modules()
    )


def _meta_gradients_jvp(
    net, cache, look, coeffs, probe_x, probe_y, train_x, train_logits, *, step_size, momentum,
    info, decay, zero_at_coeffs=False, probe_loss=None, multi=False,
):  # fmt: skip
    """The forward-mode path of :func:`meta_gradients` (see its docstring)."""
    named, params = cache.named, cache.params
    names = [n for n, _ in named]
    # ∂L_look/∂z, differentiable in the coefficients (through the loss head only)
    (dz,) = torch.autograd.grad(look, [train_logits], create_graph=True, retain_graph=True)
    if zero_at_coeffs:  # ∇_θ L_look = ∇_θ ½λ‖θ‖² = λθ
        grads = [wd * p.detach() if wd else None for p, (wd, _) in zip(params, info)]
    else:  # ∇_θ L_look, first order (the engine back-propagates the same forward later)
        grads = torch.autograd.grad(look, params, retain_graph=True, allow_unused=True)
        if multi:  # W > 1: the global batch's gradient (the ranks' shares summed)
            grads = _all_reduce_list(
                [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
            )
    lookahead = {}
    for name, p, g, (_, buf) in zip(names, params, grads, info):
        step = torch.zeros_like(p) if g is None else g.detach()
        if momentum and buf is not None:
            step = step + momentum * buf.detach()
        lookahead[name] = (p.detach() - step_size * step).requires_grad_(True)
    buffers = cache.buffers(net)
    logits = functional_call(net, {**lookahead, **buffers}, (probe_x,))
    meta = probe_loss(logits) + decay(list(lookahead.values()))
    g_p = torch.autograd.grad(meta, list(lookahead.values()), allow_unused=True)
    g_p = tuple(torch.zeros_like(p) if g is None else g for p, g in zip(params, g_p))
    if multi:  # W > 1: ∇_θ' of the global probe loss
        g_p, meta = tuple(_all_reduce_list(g_p)), all_reduce_sum(meta.detach())

    with forward_ad.dual_level():  # J g_p: the training forward with tangents g_p on θ
        duals = {n: forward_ad.make_dual(p.detach(), t) for n, p, t in zip(names, params, g_p)}
        zdot = forward_ad.unpack_dual(
            functional_call(net, {**duals, **buffers}, (train_x.detach(),))
        ).tangent
    s = (dz.float() * zdot.detach().float()).sum()
    out = torch.autograd.grad(s, list(coeffs), allow_unused=True)
    out = tuple(torch.zeros_like(c) if g is None else -step_size * g for c, g in zip(coeffs, out))
    return out, meta.detach(), logits.detach()


def normalized_weights(grad: torch.Tensor) -> torch.Tensor:
    """w = max(−grad, 0) / (Σ max(−grad, 0) + 1e-5) (L2R step 4, IEG's normalizer)."""
    w = (-grad).clamp_min(0)
    return w / (global_sum(w.sum()) + NORM_EPS)  # W > 1: the global batch's normaliser


def require_probe(method: Method) -> ProbeStream:
    if method.ctx.probe is None:
        raise ConfigError(
            f"method {method.name!r} needs a clean probe set: pass --probe-per-class 10 (or "
            "--probe-ratio, --probe-file)"
        )
    return ProbeStream(method.ctx.probe)


class ProbeMethod(NetEMA, Method):
    """Plumbing shared by the probe-based methods (L2R, IEG): a resumable stream over the clean
    probe set and an optional EMA of the network (updated after each step, evaluated first)."""

    needs = frozenset({"probe"})

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.models = {"net": ctx.make_model()}
        self.probe = require_probe(self)
        self.init_ema(config.ema_decay)

    def state_dict(self):
        return {"probe_step": self.probe.step, **self.ema_state()}

    def load_state_dict(self, state):
        self.probe.step = int(state["probe_step"])
        self.load_ema_state(state)


@METHODS.register("l2r")
class L2R(ProbeMethod):
    """Learning to Reweight: one-step look-ahead meta-gradient example weights on a clean probe."""

    name = "l2r"
    distributed = True  # W > 1: the spec's exact mode, or the official per-replica rule

    @dataclass
    class Config:
        # W > 1: "exact" (the 1-process weights of the global batch: all-reduced look-ahead
        # and probe gradients, one normaliser) or "per-replica" (google-research/ieg under
        # MirroredStrategy: each rank's meta step on its own train and probe shard, weights
        # normalised per rank, loss / W); one process: the same
        meta_sync: Literal["exact", "per-replica"] = "exact"
        meta_stepsize: float = 0.1  # α, step of the virtual update (IEG repo's meta_stepsize)
        init_weight: float = 0.0  # ε₀, where the weights are linearised (L2R: 0)
        meta_momentum: float = 0.0  # factor of the optimizer's momentum in the virtual step
        meta_weight_decay: bool = True  # weight decay in look-ahead and meta loss (IEG code)
        ema_decay: float = 0.999  # EMA of the weights used for evaluation (0: off)

    def training_step(self, batch, epoch):
        net = self.models["net"]
        probe, local = replica_probe(self, self.probe.next())
        logits = net(batch.x)
        ce = F.cross_entropy(logits.float(), batch.labels, reduction="none")
        eps = torch.full_like(ce, self.config.init_weight).requires_grad_(True)
        with replica_local() if local else nullcontext():  # per-replica: no collective
            (g_eps,), _, _ = meta_gradients(
                net,
                lambda e: (e * ce).sum(),
                (eps,),
                probe.x,
                probe.labels,
                step_size=self.config.meta_stepsize,
                momentum=self.config.meta_momentum,
                optimizer=self.optimizer,
                weight_decay=self.config.meta_weight_decay,
                train_x=batch.x,
                train_logits=logits,
                zero_at_coeffs=self.config.init_weight == 0,
            )
            w = normalized_weights(g_eps).detach()
        loss = (w * ce).sum() / (world() if local else 1)  # per-replica: the replicas' mean
        return StepOutput(
            loss=loss, logits=logits, selected=w > 0, weights=w, score=-g_eps.detach()
        )
