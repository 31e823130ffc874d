"""``noisyfit clean --method incv``: find the clean samples of a noisy dataset (INCV.py).

Runs INCV's iterative noisy cross-validation (:func:`noisyfit.analysis.incv.incv_select`) with
the options of the ``incv`` method (``--method-options iterations 4 cv_epochs 50 ...``) and
the run's dataset/noise/model flags, and writes into ``<out>/<name>/``:

* ``incv_results.csv`` — one row per training sample, the original's columns
  ``y, y_noisy, select, candidate, eval_ratio`` (``y`` empty where no true labels exist;
  ``select``/``candidate`` as True/False; ``eval_ratio`` = ε̂ on every row);
* ``incv_summary.json`` — ε̂, the agreement it came from, ρ, and per iteration the sizes of
  S and C and (with true labels) label precision/recall of S;
* ``noise.json``, ``config.yaml`` — the noise manifest and the resolved config.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..cleaning import CSV_COLUMNS, clean_incv, write_incv_csv  # noqa: F401  (the API)
from ..cli import TrainFlags, command, parse_args
from ..config import TrainConfig
from ..errors import ConfigError


@dataclass
class CleanArgs:
    """Find the clean samples of a noisy dataset with INCV (--method incv, the only cleaner so
    far). The dataset, noise, model and optimizer flags are the train command's; INCV's options
    go in --method-options (iterations=4 cv_epochs=50 cv_schedule=incv|run keep_best
    noise_kind eps split_seed). Writes <out>/<name>/incv_results.csv and incv_summary.json."""

    train: TrainFlags = field(default_factory=TrainConfig)
    config: Path | None = None
    """A YAML file of TrainConfig keys: the defaults, which the flags given override."""


@command(
    "clean",
    help="find the clean samples of a noisy dataset (--method incv); writes "
    "the per-sample CSV y, y_noisy, select, candidate, eval_ratio",
)
def cmd_clean(argv: Sequence[str]) -> int:
    """noisyfit clean --method incv [--config FILE] [TrainConfig flags]"""
    a = parse_args(CleanArgs, argv, prog="noisyfit clean", train_defaults={"method": "incv"})
    if a.train.method != "incv":
        raise ConfigError(f"noisyfit clean --method {a.train.method}: the only cleaner is incv")
    cfg = a.train
    name = cfg.name or (
        f"clean-{cfg.dataset}-{cfg.noise}{cfg.noise_rate:g}-s{cfg.seed}-"
        f"{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out = Path(cfg.out) / name
    s = clean_incv(cfg, out=out)
    print(
        f"\nINCV on {cfg.dataset} ({cfg.noise} {cfg.noise_rate:g}): estimated noise rate "
        f"{s['eval_ratio']:.3f}; selected {s['selected']} of {s['num_samples']}, "
        f"{s['candidates']} candidates left"
    )
    if "label_precision" in s:
        print(f"  label precision {s['label_precision']:.4f}, label recall {s['label_recall']:.4f}")
    print(f"  wrote {out / 'incv_results.csv'} and {out / 'incv_summary.json'}")
    return 0
