"""What the benchmark scripts share: one way to run jobs in worker processes, the command line a
table names, and writing the table."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch


@contextlib.contextmanager
def results(fn: Callable, jobs: Iterable, processes: int) -> Iterator[Iterator]:
    """``fn(job)`` for every job, in order of completion: in ``processes`` spawned worker
    processes with one torch thread each (``processes`` > 1), else one after another here."""
    if processes <= 1:
        yield map(fn, jobs)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        yield pool.imap_unordered(fn, jobs)


def command(script: str, argv: list[str] | None) -> str:
    """``python benchmarks/<script> <its arguments>`` (``argv`` None: this process's)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", f"benchmarks/{script}", *args])


def publish(out: Path, lines: list[str]) -> None:
    """Write the Markdown ``lines`` to ``out`` (making its folder) and print them."""
    text = "\n".join(lines).rstrip("\n") + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
