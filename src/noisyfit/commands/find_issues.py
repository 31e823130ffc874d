"""``noisyfit find-issues``: train with a chosen method and write the label-issue table.

::

    noisyfit find-issues --method cv --folds 3 --dataset arrays --data-dir mine.npz --noise none
    noisyfit find-issues --method incv --dataset fashion-mnist --noise symmetric --noise-rate 0.4
    noisyfit find-issues --method coteaching ...          # any registered method

Every row of your data is examined (``arrays``/``imagefolder``: no test hold-out is taken;
``--holdout 0.1`` holds 10% out of training and still scores it). Writes
``<out>/<name>/label_issues.csv`` (cleanlab's columns: index, given_label, suggested_label,
is_label_issue, label_quality; then dataset_index — the row in your array — file, the class
names, held_out), ``pred_probs.npy`` (N, K) for
``cleanlab.filter.find_label_issues(labels, pred_probs)``, ``given_labels.npy`` and
``issues_summary.json``. See :mod:`noisyfit.issues`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import distributed as dist
from ..api import resolve_device
from ..cli import TrainFlags, command, parse_args
from ..config import TrainConfig
from ..issues import BUILTIN, LowAccuracyWarning, find_issues


@dataclass
class FindIssuesArgs:
    """Find the wrong labels of a dataset. --method cv|incv|<any registered method> (default
    cv: K-fold cross-validated out-of-sample probabilities). Every row is examined. Your own
    data: --dataset arrays --data-dir data.npz --noise none (or imagefolder). Writes
    <out>/<name>/label_issues.csv, pred_probs.npy, issues_summary.json."""

    train: TrainFlags = field(default_factory=TrainConfig)
    folds: int = 3
    """cv: the K of K-fold cross-validation."""
    top: int = 10
    """Most suspect rows printed."""
    holdout: float = 0.0
    """cv: share of rows no network trains on (still scored)."""
    config: Path | None = None
    """A YAML file of TrainConfig keys: the defaults, which the flags given override."""


@command(
    "find-issues",
    help="find label errors: --method cv (K-fold, default), incv, or any "
    "method; writes label_issues.csv (cleanlab's shape) and pred_probs.npy",
)
def cmd_find_issues(argv: Sequence[str]) -> int:
    """noisyfit find-issues [--method M] [--folds K] [--top N] [--config F] [TrainConfig flags]"""
    a = parse_args(
        FindIssuesArgs, argv, prog="noisyfit find-issues", train_defaults={"method": "cv"}
    )
    method = a.train.method  # --method names the finder; find_issues sets the run's own
    cfg = a.train.replace(method=TrainConfig.method)
    name = cfg.name or (
        f"issues-{cfg.dataset}-{method}-{cfg.noise}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    dist.init(resolve_device(cfg.device))  # torchrun (W > 1): join the group first
    out = Path(dist.broadcast_object(str(Path(cfg.out) / name)))  # rank 0's folder name
    if method not in BUILTIN:  # a training method's own run folder sits beside
        cfg = cfg.replace(name=f"{name}-run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowAccuracyWarning)  # printed below, with the summary
        res = find_issues(cfg, method=method, folds=a.folds, holdout=a.holdout, out=out)
    if not dist.is_main():  # torchrun: rank 0 speaks for the run
        return 0
    s = res.summary
    print(
        f"\n{s['num_issues']} of {s['num_samples']} labels flagged as issues "
        f"({method}, {s['wall_time_s']:.1f} s); {s['num_samples']} of "
        f"{s['num_rows_in_data']} rows of the data examined"
    )
    print(f"  flagged by {s.get('flagged_by', method)}")
    acc = s.get("oof_accuracy", s.get("fit_accuracy"))
    kind = "out-of-fold" if "oof_accuracy" in s else "in-sample (training)"
    if acc is not None:
        print(
            f"  {kind} accuracy on your labels {100 * acc:.2f}%; estimated noise rate "
            f"{100 * s['estimated_noise_rate']:.2f}%"
        )
    if s.get("held_out_accuracy_on_your_labels") is not None:
        print(
            f"  held-out accuracy on your labels {100 * s['held_out_accuracy_on_your_labels']:.2f}%"
            f" ({s['num_held_out']} rows no network trained on)"
        )
    if s.get("warning"):
        print(f"  WARNING: {s['warning']}")
    if s.get("error_precision") is not None or s.get("error_recall") is not None:

        def pct(v):
            return "n/a" if v is None else f"{100 * v:.2f}%"

        print(
            f"  vs the true labels: {pct(s.get('error_precision'))} of the flagged labels "
            f"are wrong (chance: {pct(s['realized_noise_rate'])}); "
            f"{pct(s.get('error_recall'))} of the wrong labels are flagged"
        )
        print(
            f"  kept set: label precision {pct(s.get('label_precision'))}, label recall "
            f"{pct(s.get('label_recall'))}"
        )
    top = res.ranked()[: a.top]
    if len(top):
        print(
            "  most suspect: "
            + ", ".join(
                f"{res.where(i)} {_name(res, res.given_labels[i])}→"
                f"{_name(res, res.suggested_labels[i])} (q {res.label_quality[i]:.2f})"
                for i in top
            )
        )
    print(f"  wrote {out / 'label_issues.csv'} and {out / 'pred_probs.npy'}")
    return 0


def _name(res, c) -> str:
    c = int(c)
    return res.class_names[c] if c < len(res.class_names) else str(c)
