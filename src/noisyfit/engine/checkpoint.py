"""Checkpoints: written atomically, loaded with ``weights_only=True`` (no pickled code)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, NoCheckpointError
from .run import temp_path


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` via a temporary file unique to this writer and an atomic
    rename, so an interrupted write never leaves a broken checkpoint behind."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors, numbers, strings, containers).

    Raises:
        NoCheckpointError: no file at ``path``.
        CheckpointError: the file is empty, truncated, not a checkpoint, holds pickled code, or
            is not a noisyfit checkpoint (one line naming the file and the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise NoCheckpointError(
            f"no checkpoint at {path}: the run stopped before its first epoch ended, or was "
            "started with --no-checkpoint. Start it again without --resume."
        )
    fix = (
        "restore it from a copy, or delete the run folder and start the run again without "
        "--resume (its epochs are lost)"
    )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the checkpoint is empty (0 bytes); {fix}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, random bytes, a pickle with code, ...
        kind = "holds objects other than tensors" if "weights_only" in str(e) else "unreadable"
        raise CheckpointError(
            f"{path}: the checkpoint is {kind} ({type(e).__name__}); it is truncated, corrupt "
            f"or not a noisyfit checkpoint; {fix}"
        ) from None
    missing = [
        k for k in ("epoch", "models", "history") if not isinstance(state, dict) or k not in state
    ]
    if missing:
        raise CheckpointError(f"{path}: not a noisyfit checkpoint (no {', '.join(missing)}); {fix}")
    return state


def state_store(path: str | Path | None) -> dict[str, Any]:
    """A multi-stage method's resumable state file (INCV's ``incv_stage1.pt``) as the
    ``saved_state`` (the file's content, None if absent) and ``save_state(state)`` (an
    atomic write) that :func:`noisyfit.analysis.incv.incv_select` takes; ``{}`` for None.
    Methods get it as ``ctx.stage_state(file name)``."""
    if path is None:
        return {}
    path = Path(path)
    saved = load_checkpoint(path) if path.is_file() else None
    return {"saved_state": saved, "save_state": lambda st: save_checkpoint(st, path)}
