"""``torch.distributed`` in one place: init from torchrun's environment, rank/world helpers,
the few collectives the engine needs, and a single-process fallback with the same API.

Launched by ``torchrun`` (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` in the environment),
:func:`init` joins the process group (gloo on CPU, NCCL on CUDA with device
``cuda:LOCAL_RANK``) with a timeout, so a desync fails instead of hanging. Without that
environment the process is world 1 and every collective is the identity: the same code runs
in one process with no ``torch.distributed`` call at all.

Collectives (all ranks must call them in the same order):

* :func:`all_gather_rows` — rows of unequal counts, padded to equal shapes for the transport
  and trimmed after (gloo and NCCL need equal shapes); one collective when the counts are
  known on every rank (the sharded loader knows them), two otherwise.
* :func:`all_reduce_sum`, :func:`broadcast`, :func:`broadcast_object`, :func:`barrier`.
* :func:`all_reduce_sum_autograd` — a sum whose backward all-reduces the gradient too (on a
  group of its own), for a loss of per-sample terms that share a global-batch statistic.
* :func:`shutdown` — barrier, then ``destroy_process_group`` (without the barrier two-rank gloo
  runs aborted at exit, docs/spec distributed §2.1).

:func:`run_ranks` starts W local processes on a free TCP port (tests, the benchmark).
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

#: Seconds a collective may wait for the other ranks before failing (torchrun runs).
DEFAULT_TIMEOUT_S = 600.0


@dataclass
class _World:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    owned: bool = False  # this module initialised the process group (and destroys it)
    grad_group: Any = None  # the group of :func:`all_reduce_sum_autograd` (made on first use)


_W = _World()


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init(device: torch.device | str | None = None, timeout_s: float | None = None) -> torch.device:
    """Join the process group torchrun describes (no-op in a single process).

    Args:
        device: the device the run asked for (``cpu``, ``cuda``, ``cuda:0``, None = cpu).
            On CUDA each rank takes ``cuda:LOCAL_RANK`` and the backend is NCCL; else gloo.
        timeout_s: collective timeout (default ``NOISYFIT_DIST_TIMEOUT`` or 600 s).

    Returns:
        The device this rank computes on.
    """
    dev = torch.device(device or "cpu")
    if tdist.is_available() and tdist.is_initialized():
        _sync_from_group()
    elif env_world_size() > 1:
        if timeout_s is None:
            timeout_s = float(os.environ.get("NOISYFIT_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
        backend = "nccl" if dev.type == "cuda" else "gloo"
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if dev.type == "cuda":
            torch.cuda.set_device(local)
        tdist.init_process_group(
            backend=backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s)
        )
        _sync_from_group(local_rank=local, owned=True)
    if dev.type == "cuda" and _W.world > 1:
        return torch.device("cuda", _W.local_rank)
    return dev


def init_process(
    rank: int, world: int, init_method: str, backend: str = "gloo", timeout_s: float = 60.0
) -> None:
    """Join an explicit process group (tests and :func:`run_ranks`; torchrun uses :func:`init`)."""
    tdist.init_process_group(
        backend=backend,
        init_method=init_method,
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    _sync_from_group(local_rank=rank, owned=True)


def _sync_from_group(local_rank: int | None = None, owned: bool = False) -> None:
    _W.rank, _W.world = tdist.get_rank(), tdist.get_world_size()
    _W.local_rank = int(os.environ.get("LOCAL_RANK", _W.rank)) if local_rank is None else local_rank
    _W.backend = tdist.get_backend()
    _W.owned = _W.owned or owned


def rank() -> int:
    """This process's rank (0 in a single process)."""
    return _W.rank


def world() -> int:
    """Number of processes W (1 in a single process)."""
    return _W.world


def is_distributed() -> bool:
    """True when W > 1."""
    return _W.world > 1


def is_main() -> bool:
    """True on rank 0 (always in a single process): the rank that writes files."""
    return _W.rank == 0


def shutdown(barrier: bool = True) -> None:
    """Barrier, then destroy the process group this module created (no-op otherwise).
    ``barrier=False`` after an error on this rank: the others may never reach the barrier."""
    if _W.owned and tdist.is_initialized():
        try:
            if barrier:
                tdist.barrier()
        finally:
            tdist.destroy_process_group()
    _W.rank, _W.world, _W.local_rank, _W.backend, _W.owned = 0, 1, 0, None, False
    _W.grad_group = None


# -- collectives ------------------------------------------------------------------------------


def barrier() -> None:
    if _W.world > 1:
        tdist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Σ over ranks of ``t`` (any shape), returned as a new tensor; ``t`` itself if W = 1."""
    if _W.world == 1:
        return t
    out = t.detach().clone()
    tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
    return out


class _SumOverRanks(torch.autograd.Function):
    """Σ over ranks in forward; the gradient is summed over ranks in backward (itself
    differentiable, so double backward and forward-then-backward meta steps stay exact)."""

    @staticmethod
    def forward(ctx, t):
        out = t.detach().clone(memory_format=torch.contiguous_format)
        tdist.all_reduce(out, op=tdist.ReduceOp.SUM, group=_grad_group())
        return out

    @staticmethod
    def backward(ctx, grad):
        return _SumOverRanks.apply(grad)


def _grad_group():
    """A second process group over all ranks, so that collectives run inside ``backward``
    never interleave with DDP's gradient all-reduces on the default group. Made on first
    use, which every rank reaches at the same point of the same training step."""
    if _W.grad_group is None:
        _W.grad_group = tdist.new_group(ranks=list(range(_W.world)))
    return _W.grad_group


def all_reduce_sum_autograd(t: torch.Tensor) -> torch.Tensor:
    """Σ over ranks of ``t`` (any shape) with the exact gradient: ∂L/∂t_r = Σ_r' ∂L_r'/∂(Σt)
    (the backward all-reduces too, on a separate group). Every rank must run the same forward
    and the same backward passes through it. ``t`` itself if W = 1."""
    if _W.world == 1:
        return t
    return _SumOverRanks.apply(t)


def broadcast(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank ``src``'s ``t`` on every rank (in place; returned)."""
    if _W.world > 1:
        tdist.broadcast(t, src=src)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank."""
    if _W.world == 1:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_rows(t: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """The rows of ``t`` (b_r, ...) of every rank, concatenated in rank order (Σ b_r, ...).

    Shapes must agree beyond the first dim. The rows are padded to max_r b_r for the transport
    (gloo/NCCL need equal shapes) and the padding is dropped. ``sizes``: every rank's b_r when
    known on all ranks (one collective); None: the counts are gathered first (two).
    """
    if _W.world == 1:
        return t
    if sizes is None:
        n = torch.tensor([t.shape[0]], dtype=torch.int64, device=t.device)
        got = [torch.empty_like(n) for _ in range(_W.world)]
        tdist.all_gather(got, n)
        sizes = [int(x) for x in torch.cat(got).tolist()]
    m = max(sizes)
    if m == 0:
        return t[:0]
    pad = t.new_zeros((m, *t.shape[1:]))
    pad[: t.shape[0]] = t
    got = [torch.empty_like(pad) for _ in range(_W.world)]
    tdist.all_gather(got, pad.contiguous())
    return torch.cat([g[:s] for g, s in zip(got, sizes)])


# -- local launch -----------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, fn: Callable, world: int, url: str, timeout_s: float, backend: str, args):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    init_process(rank, world, url, backend=backend, timeout_s=timeout_s)
    try:
        fn(rank, *args)
    except BaseException:
        shutdown(barrier=False)
        raise
    shutdown()


def run_ranks(
    fn: Callable, world: int, *args: Any, timeout_s: float = 120.0, backend: str = "gloo"
) -> None:
    """Run ``fn(rank, *args)`` in ``world`` spawned processes joined by ``backend`` (gloo;
    NCCL: one GPU per rank, ``cuda:rank``) on a free TCP port.

    ``fn`` must be importable (a module-level function). Raises RuntimeError if a rank fails
    or the whole run exceeds ``timeout_s`` (the processes are then killed), so a desync
    fails instead of hanging. Collectives inside time out after ``timeout_s`` too.
    """
    url = f"tcp://127.0.0.1:{free_port()}"
    ctx = mp.start_processes(
        _entry,
        args=(fn, world, url, timeout_s, backend, args),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout_s
    try:
        while not ctx.join(timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
            if time.monotonic() > deadline:
                raise RuntimeError(f"run_ranks: {world} ranks did not finish in {timeout_s:.0f} s")
    except BaseException:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
        raise


# -- the step being trained -------------------------------------------------------------------


@dataclass
class StepShard:
    """Where this rank's rows sit in the global batch of the step being trained.

    Attributes:
        global_size: n, samples in the global batch.
        offset: position of this rank's first row.
        sizes: (W,) every rank's row count.
    """

    global_size: int
    offset: int
    sizes: tuple[int, ...]

    @property
    def part(self) -> slice:
        """This rank's rows in a global-batch tensor."""
        return slice(self.offset, self.offset + self.sizes[_W.rank])


_STEP: list[StepShard | None] = []


def current_step() -> StepShard | None:
    """The shard of the step being trained when W > 1 (set by the engine), else None: the
    method helpers then take their 1-process path, bit for bit the code before DDP."""
    return _STEP[-1] if _STEP else None


class step_context:
    """``with step_context(batch):`` — mark the training step of a sharded batch (a
    ``ShardBatch``); a plain batch (1 process) marks nothing."""

    def __init__(self, batch: Any):
        sizes = getattr(batch, "sizes", ())
        self.shard = (
            StepShard(batch.global_size, batch.offset, tuple(sizes)) if len(sizes) > 1 else None
        )

    def __enter__(self) -> StepShard | None:
        if self.shard is not None:
            _STEP.append(self.shard)
        return self.shard

    def __exit__(self, *exc) -> None:
        if self.shard is not None:
            _STEP.pop()


def env_rank() -> int:
    """``RANK`` from the environment (0 without torchrun), readable before :func:`init`."""
    return int(os.environ.get("RANK", "0") or 0)


class replica_local:
    """``with replica_local():`` — inside a multi-process step, the method helpers see no step
    (``current_step()`` is None) and take their 1-process path on this rank's rows alone: no
    collective, per-rank sums and means (L2R/IEG's ``meta_sync="per-replica"``, the official
    MirroredStrategy rule). With one process it changes nothing."""

    def __enter__(self) -> None:
        _STEP.append(None)

    def __exit__(self, *exc) -> None:
        _STEP.pop()
