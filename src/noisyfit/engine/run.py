"""The run folder: what a run writes, and the environment it records.

Layout of ``<out>/<name>/``::

    config.yaml        the resolved TrainConfig
    env.json           versions, device, git commit, host
    noise.json         the noise manifest (kind, nominal/realized rate and T, seed, SHA-256)
    noisy_labels.npy   the labels the method was given
    log.csv            SELFIE layout: epoch, learning rate, training loss, training error,
                       test loss, test error
    metrics.jsonl      one JSON object per epoch (all metrics, throughput in images/s)
    checkpoint.pt      the latest complete epoch (models, optimizer, RNG, method state)
    samples.csv        per-sample verdicts at the end
    summary.json       the final summary
    data_source.json   where the data came from: the files read and their SHA-256
    .lock              the exclusive lock of the process writing the folder (its pid inside)

A run folder has one writer: :class:`RunLock` (``fcntl.flock``, released by the kernel when
the process ends, even on ``kill -9``) is held for the run's life, and every file is written
to a temporary name unique to the writer, then renamed into place (:func:`atomic_write`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import platform
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from .. import distributed as dist
from .._version import __version__
from ..errors import RunLockedError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): RunLock takes no lock there
    fcntl = None
from .diagnostics import VERDICTS

LOG_CSV_HEADER = [
    "epoch",
    "learning rate",
    "training loss",
    "training error",
    "test loss",
    "test error",
]


def _clean(v: Any) -> Any:
    """JSON-safe values: NaN/inf → None, numpy scalars → Python."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def temp_path(path: str | Path) -> Path:
    """A temporary name beside ``path``, unique to this writer (pid and a random part)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: str | Path, write, mode: str = "w", **open_kw: Any) -> None:
    """Call ``write(f)`` on a writer-unique temporary file, then rename it to ``path``: a
    reader sees the old file or the new one, never half of one; two writers never share a
    temporary file."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, mode, **open_kw) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(_clean(obj), indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text))


class RunLock:
    """The exclusive lock of a run folder (``<run_dir>/.lock``), held for the run's life.

    ``fcntl.flock`` on the lock file: the kernel releases it when the holder ends, however it
    ends (also ``kill -9``), so a stale lock never blocks a later run. The holder's pid and
    host are written into the file for the error message of the next process.
    """

    NAME = ".lock"

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.path = self.dir / self.NAME
        self._fd: int | None = None

    @staticmethod
    def holder(run_dir: str | Path) -> str | None:
        """ "pid N on HOST" of the process holding ``run_dir``'s lock, or None if it is free."""
        lock = RunLock(run_dir)
        if not lock.path.is_file():
            return None
        try:
            lock.acquire()
        except RunLockedError as e:
            return e.holder
        lock.release()
        return None

    def acquire(self) -> RunLock:
        """Take the lock or raise RunLockedError naming the holder's pid."""
        if fcntl is None:  # not POSIX (Windows): no lock, as before
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            who = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            err = RunLockedError(
                f"{self.dir} is in use by another noisyfit process ({who}); wait for it to "
                f"end (or stop it), or choose another --name"
            )
            err.holder = who
            raise err from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


#: Files whose presence means a run folder holds a run worth keeping.
RUN_FILES = ("summary.json", "checkpoint.pt")


def run_state(run_dir: str | Path) -> str:
    """``"finished"`` (summary.json), ``"resumable"`` (checkpoint.pt, no summary),
    ``"started"`` (config.yaml only: stopped before its first checkpoint; nothing to keep),
    or ``"empty"``."""
    d = Path(run_dir)
    if (d / "summary.json").is_file():
        return "finished"
    if (d / "checkpoint.pt").is_file():
        return "resumable"
    if (d / "config.yaml").is_file():
        return "started"
    return "empty"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def data_source(ds: Any, cfg: Any) -> dict[str, Any]:
    """``data_source.json``: the dataset, ``--data-dir``, the builder's note, and every file
    read (path, bytes, SHA-256) with one SHA-256 over all of them (synthetic data: none)."""
    files = [Path(f) for f in ds.extra.get("files_read", [])]
    rows, total = [], hashlib.sha256()
    for f in files:
        digest = file_sha256(f) if f.is_file() else None
        rows.append({"path": str(f.resolve()), "bytes": f.stat().st_size, "sha256": digest})
        total.update(f"{f.name}:{digest}\n".encode())
    return {
        "dataset": ds.name,
        "data_dir": cfg.data_dir,
        "source": ds.source,
        "files": rows,
        "sha256": total.hexdigest() if rows else None,
        "warnings": list(ds.extra.get("warnings", [])),
    }


def git_commit() -> str | None:
    """The commit of the noisyfit source tree, if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, device and host facts recorded in ``env.json``."""
    env = {
        "noisyfit": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "processes": dist.world(),  # torchrun's world size (1: one process)
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


class RunLog:
    """Writes ``log.csv`` and ``metrics.jsonl`` from the list of per-epoch records.

    The files are rewritten from the full history at every epoch, so a resumed run's logs hold
    exactly the epochs of the checkpoint it resumed from, then the new ones.
    """

    def __init__(self, run_dir: Path):
        self.dir = run_dir

    def write(self, history: list[dict[str, Any]]) -> None:
        def write_csv(f) -> None:
            w = csv.writer(f)
            w.writerow(LOG_CSV_HEADER)
            for h in history:
                w.writerow(
                    [
                        h["epoch"],
                        _fmt(h["lr"]),
                        _fmt(h["train_loss"]),
                        _fmt(h["train_error"]),
                        _fmt(h["test_loss"]),
                        _fmt(h["test_error"]),
                    ]
                )

        atomic_write(self.dir / "log.csv", write_csv, newline="")
        lines = "".join(json.dumps(_clean(h)) + "\n" for h in history)
        atomic_write(self.dir / "metrics.jsonl", lambda f: f.write(lines))


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def write_samples_csv(
    path: Path,
    given: np.ndarray,
    true: np.ndarray | None,
    verdict: np.ndarray,
    label: np.ndarray,
    score: np.ndarray,
    weight: np.ndarray,
) -> None:
    """``samples.csv``: index, given_label, true_label (empty if unknown), verdict, label
    (the label the method trained on last), score, weight."""
    names = np.array([VERDICTS[int(k)] for k in range(4)])

    def write(f) -> None:
        w = csv.writer(f)
        w.writerow(["index", "given_label", "true_label", "verdict", "label", "score", "weight"])
        for i in range(len(given)):
            w.writerow([
                i, int(given[i]), "" if true is None else int(true[i]), names[verdict[i]],
                int(label[i]), "" if np.isnan(score[i]) else f"{score[i]:.6g}",
                "" if np.isnan(weight[i]) else f"{weight[i]:.6g}",
            ])  # fmt: skip

    atomic_write(path, write, newline="")
