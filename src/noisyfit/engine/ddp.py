"""What ``fit()`` does differently with W > 1 processes (torchrun): :class:`Replicas`.

* **Refusal:** a method without ``distributed = True`` (its step not yet made exact across
  ranks), ``--mixup`` and a method whose state cannot be synced row-wise are refused with a
  ConfigError before any work (:func:`check_distributed`).
* **Batches:** the training loader becomes a :class:`~noisyfit.data.sharded.ShardedLoader`
  (each rank's share of the 1-process global batches).
* **Networks:** each network of ``method.models`` is replaced by its own
  ``DistributedDataParallel`` wrapper for the epoch's steps (the method keeps calling
  ``self.models[name](x)``) and unwrapped for evaluation, EMA swaps and checkpoints; DDP's
  construction broadcasts rank 0's weights, so every epoch starts from identical networks.
  The engine back-propagates W × the method's loss (DDP averages, the loss is the rank's share).
* **Per-sample state:** after each step one fused ``all_gather`` carries, for the rank's
  ``batch.index``, the rows of every tensor named in ``method.state_names`` whose first dim is N
  and of the engine's ``SampleVerdicts`` (packed as bytes, whatever their dtypes), and every
  replica writes all ranks' rows: the state stays identical on every rank and equal to the
  1-process state.
* **Epoch counters** (loss and error sums, predicted-class counts, ``SelectionMeter``) are
  all-reduced at the epoch end.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import distributed as dist
from ..data.sharded import ShardedLoader
from ..errors import ConfigError
from ..methods.base import METHODS


def check_distributed(method: Any, cfg: Any) -> None:
    """Raise ConfigError when this W > 1 run cannot be exact (nothing to check when W = 1)."""
    w = max(dist.world(), dist.env_world_size())
    if w <= 1:
        return
    if not runs_distributed(method):
        ok = ", ".join(n for n in METHODS.names() if runs_distributed(METHODS.get(n)))
        raise ConfigError(
            f"method {cfg.method!r} does not run with {w} processes yet (its step is not made "
            f"exact across ranks); run it in one process (without torchrun), or use one of: {ok}"
        )
    if getattr(cfg, "mixup", 0) > 0:
        raise ConfigError(
            f"--mixup does not run with {w} processes yet (the pairing is per process); "
            "drop --mixup or run in one process"
        )
    if getattr(cfg, "sync_bn", False):
        if str(getattr(cfg, "device", "auto")).startswith("cpu") or not torch.cuda.is_available():
            raise ConfigError(
                f"--sync-bn with {w} processes needs CUDA (torch's SyncBatchNorm runs on GPUs "
                "only); drop --sync-bn on CPU (each process then normalises its own share)"
            )
        needs = getattr(method, "needs", frozenset())
        if "probe" in needs:  # the meta step's look-ahead must not run collectives
            raise ConfigError(
                f"--sync-bn: method {cfg.method!r} runs a look-ahead (meta) step that must not "
                "synchronise BatchNorm; drop --sync-bn"
            )


def runs_distributed(method: Any) -> bool:
    """The method's class itself declares ``distributed = True`` (a subclass's additions are
    not exact just because its parent's step is: it declares it again)."""
    cls = method if isinstance(method, type) else type(method)
    return bool(vars(cls).get("distributed", False))


class Replicas:
    """The W > 1 machinery of one ``fit`` (see the module docstring).

    Args:
        method: the built method (networks on this rank's device).
        verdicts: the engine's SampleVerdicts (replicated like the method's state).
        num_samples: N, the first dim of per-sample state.
    """

    def __init__(self, method: Any, verdicts: Any, num_samples: int, *, sync_bn: bool = False):
        self.method, self.verdicts, self.n = method, verdicts, int(num_samples)
        self.sync_bn = sync_bn  # convert BatchNorm to SyncBatchNorm at the first wrap
        self.world, self.rank = dist.world(), dist.rank()
        self.live: dict[str, nn.Module] | None = None

    @classmethod
    def for_fit(cls, method: Any, verdicts: Any, cfg: Any, num_samples: int) -> Replicas | None:
        """The machinery when W > 1 (after :func:`check_distributed`), None in one process."""
        if not dist.is_distributed():
            return None
        check_distributed(method, cfg)
        return cls(method, verdicts, num_samples, sync_bn=bool(getattr(cfg, "sync_bn", False)))

    def loader(self, train: Any) -> Any:
        return ShardedLoader(train, self.rank, self.world)

    # -- networks ---------------------------------------------------------------------------
    def wrap(self) -> None:
        """Put one DDP wrapper per network into ``method.models`` (for the epoch's steps)."""
        if self.sync_bn:  # once: the same parameters and buffers, in SyncBatchNorm modules
            self.method.models = {
                k: nn.SyncBatchNorm.convert_sync_batchnorm(m) for k, m in self.method.models.items()
            }
            self.sync_bn = False
        self.live = dict(self.method.models)
        wrapped = {}
        for k, m in self.live.items():
            dev = next(m.parameters()).device
            ids = [dev.index] if dev.type == "cuda" else None
            wrapped[k] = DDP(m, device_ids=ids)
        self.method.models = wrapped

    def unwrap(self) -> None:
        """Give ``method.models`` its plain networks back (evaluation, checkpoints), with
        rank 0's buffers (BatchNorm running statistics, which each rank updated from its own
        share in the last step) on every rank: the networks every rank evaluates are the ones
        rank 0 checkpoints."""
        if self.live is not None:
            self.method.models = self.live
            self.live = None
            with torch.no_grad():
                for m in self.method.models.values():
                    for b in m.buffers():
                        dist.broadcast(b)

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate W × this rank's share (DDP averages the gradients over ranks)."""
        (loss * self.world).backward()

    # -- per-sample state -------------------------------------------------------------------
    def _state_tensors(self) -> list[torch.Tensor]:
        out = []
        for name in self.method.state_names:
            t = getattr(self.method, name, None)
            if torch.is_tensor(t) and t.ndim >= 1 and t.shape[0] == self.n:
                out.append(t)
        v = self.verdicts
        return out + [v.verdict, v.label, v.score, v.weight]

    @torch.no_grad()
    def sync(self, batch: Any) -> None:
        """Write every rank's rows of this step into every replica (one all_gather)."""
        tensors = self._state_tensors()
        idx = batch.index
        b = len(idx)
        cols = [idx.reshape(b, 1).contiguous().view(torch.uint8)]
        widths = []
        for t in tensors:
            rows = t[idx].reshape(b, math.prod(t.shape[1:])).contiguous()  # b may be 0
            by = rows.view(torch.uint8) if rows.dtype != torch.bool else rows.to(torch.uint8)
            cols.append(by)
            widths.append(by.shape[1])
        packed = torch.cat(cols, 1)
        full = dist.all_gather_rows(packed, batch.sizes)
        gidx = full[:, :8].reshape(-1).clone().view(torch.int64)  # clone: offset 0, dense
        at = 8
        for t, wdt in zip(tensors, widths):
            chunk = full[:, at : at + wdt].reshape(-1).clone()
            at += wdt
            vals = chunk.to(torch.bool) if t.dtype == torch.bool else chunk.view(t.dtype)
            t[gidx] = vals.reshape(len(gidx), *t.shape[1:])

    # -- epoch counters ---------------------------------------------------------------------
    def any(self, flag: torch.Tensor) -> torch.Tensor:
        """True on every rank if ``flag`` is True on any (the non-finite-loss check)."""
        return dist.all_reduce_sum(flag.to(torch.int64)) > 0

    def reduce_epoch(self, sums: torch.Tensor, preds: torch.Tensor | None, meter: Any):
        """All-reduce the epoch's (loss·n, errors) sums, predicted-class counts and meter."""
        meter.c = dist.all_reduce_sum(meter.c)
        if preds is not None:
            preds = dist.all_reduce_sum(preds)
        return dist.all_reduce_sum(sums), preds


def on_main(fn: Any, share: Any = None) -> Any:
    """Run ``fn()`` on rank 0 only; rank 0 gets its result, the other ranks ``share(result)``
    (default: the result) by broadcast. An exception on rank 0 is raised on every rank (so
    the others do not wait for a collective rank 0 never joins). One process: ``fn()``."""
    if not dist.is_distributed():
        return fn()
    if dist.is_main():
        try:
            out = fn()
        except BaseException as e:
            dist.broadcast_object(("error", _portable(e)))
            raise
        dist.broadcast_object(("ok", out if share is None else share(out)))
        return out
    kind, value = dist.broadcast_object(None)
    if kind == "error":
        raise value
    return value


def _portable(e: BaseException) -> BaseException:
    """``e`` if it pickles, else a RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001
        return RuntimeError(f"rank 0: {type(e).__name__}: {e}")
