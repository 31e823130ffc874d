"""INCV cleaning of a noisy dataset (INCV.py): :func:`clean_incv`, what ``noisyfit clean``
and ``noisyfit find-issues --method incv`` run.

Runs INCV's iterative noisy cross-validation (:func:`noisyfit.analysis.incv.incv_select`) with
the options of the ``incv`` method and the run's dataset/noise/model config, and writes into
``out``:

* ``incv_results.csv`` — one row per training sample, the original's columns
  ``y, y_noisy, select, candidate, eval_ratio`` (``y`` empty where no true labels exist;
  ``select``/``candidate`` as True/False; ``eval_ratio`` = ε̂ on every row);
* ``incv_summary.json`` — ε̂, the agreement it came from, ρ, and per iteration the sizes of
  S and C and (with true labels) label precision/recall of S;
* ``noise.json``, ``config.yaml`` — the noise manifest and the resolved config.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .api import build_run, seed_everything
from .config import TrainConfig, save_config
from .engine.run import write_json
from .methods import incv
from .methods.base import method_config

CSV_COLUMNS = ("y", "y_noisy", "select", "candidate", "eval_ratio")


def write_incv_csv(
    path: Path,
    true: np.ndarray | None,
    noisy: np.ndarray,
    select: np.ndarray,
    candidate: np.ndarray,
    eps_hat: float,
) -> None:
    """The original's per-sample CSV (``y`` empty where no truth exists)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for i in range(len(noisy)):
            w.writerow(
                [
                    "" if true is None else int(true[i]),
                    int(noisy[i]),
                    bool(select[i]),
                    bool(candidate[i]),
                    f"{eps_hat:.3f}",
                ]
            )


def clean_incv(
    cfg: TrainConfig, *, out: Path | None = None, data=None, log=print
) -> dict[str, Any]:
    """Run INCV selection for ``cfg`` (options: ``cfg.method_options`` of ``incv``).

    Returns the summary dict, with the numpy arrays ``select``, ``candidate``, ``removed`` and
    ``oos_probs`` (first-iteration out-of-sample probabilities) added under ``"arrays"``.
    Writes the files listed in the module docstring when ``out`` is given.
    """
    opts = method_config(incv.INCV, cfg.method_options)
    if data is not None:  # given data: seeded as the selection of a fresh run
        seed_everything(cfg.seed, cfg.deterministic)
    run = build_run(cfg, data=data, method=False)
    ctx, data = run.ctx, run.data
    symmetric = incv.symmetric_noise(opts.noise_kind, cfg.noise)
    true_t = None if data.true is None else torch.as_tensor(data.true, device=ctx.device)
    t0 = time.perf_counter()
    res = incv.select_on(ctx, opts, symmetric=symmetric, true_labels=true_t, log=log)
    wall = time.perf_counter() - t0
    sel, cand = res.select.cpu().numpy(), res.candidate.cpu().numpy()
    summary: dict[str, Any] = {
        "dataset": cfg.dataset,
        "model": cfg.model,
        "noise": cfg.noise,
        "nominal_noise_rate": cfg.noise_rate,
        "realized_noise_rate": data.noisy.manifest.realized_rate,
        "num_samples": int(len(sel)),
        "symmetric": symmetric,
        "eval_ratio": res.eps_hat,
        "agreement": res.agreement,
        "removal_ratio": res.rho,
        "selected": int(sel.sum()),
        "candidates": int(cand.sum()),
        "iterations": res.iterations,
        "options": vars(opts),
        "wall_time_s": wall,
    }
    if data.true is not None:
        clean = data.true == data.noisy.labels
        summary["label_precision"] = float((sel & clean).sum() / max(sel.sum(), 1))
        summary["label_recall"] = float((sel & clean).sum() / max(clean.sum(), 1))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_incv_csv(
            out / "incv_results.csv", data.true, data.noisy.labels, sel, cand, res.eps_hat
        )
        write_json(out / "incv_summary.json", summary)
        write_json(out / "noise.json", data.noisy.manifest.to_dict())
        save_config(cfg, out / "config.yaml")
        summary["out"] = str(out)
    summary["arrays"] = {
        "select": sel,
        "candidate": cand,
        "removed": res.removed.cpu().numpy(),
        "oos_probs": None if res.oos_probs is None else res.oos_probs.cpu().numpy(),
    }
    return summary
