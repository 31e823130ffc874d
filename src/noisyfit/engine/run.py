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
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def write_json(path: str | Path, obj: Any) -> None:
    Path(path).write_text(json.dumps(_clean(obj), indent=2) + "\n")


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
    import torchvision

    from .. import __version__

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
        tmp = self.dir / "log.csv.tmp"
        with open(tmp, "w", newline="") as f:
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
        os.replace(tmp, self.dir / "log.csv")
        tmp = self.dir / "metrics.jsonl.tmp"
        with open(tmp, "w") as f:
            for h in history:
                f.write(json.dumps(_clean(h)) + "\n")
        os.replace(tmp, self.dir / "metrics.jsonl")


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
    from .diagnostics import VERDICTS

    names = np.array([VERDICTS[int(k)] for k in range(4)])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "given_label", "true_label", "verdict", "label", "score", "weight"])
        for i in range(len(given)):
            w.writerow([
                i, int(given[i]), "" if true is None else int(true[i]), names[verdict[i]],
                int(label[i]), "" if np.isnan(score[i]) else f"{score[i]:.6g}",
                "" if np.isnan(weight[i]) else f"{weight[i]:.6g}",
            ])  # fmt: skip
