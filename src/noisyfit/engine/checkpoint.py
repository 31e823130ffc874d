"""Checkpoints: written atomically, loaded with ``weights_only=True`` (no pickled code)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename, so an interrupted
    write never leaves a broken checkpoint behind."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors, numbers, strings, containers)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: the run stopped before its first epoch ended, or was "
            "started with --no-checkpoint. Start it again without --resume."
        )
    return torch.load(path, map_location=map_location, weights_only=True)
