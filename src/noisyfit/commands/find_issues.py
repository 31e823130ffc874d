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

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from ..cli import command, parse_config


@command(
    "find-issues",
    help="find label errors: --method cv (K-fold, default), incv, or any "
    "method; writes label_issues.csv (cleanlab's shape) and pred_probs.npy",
)
def cmd_find_issues(argv: Sequence[str]) -> int:
    """noisyfit find-issues [--method M] [--folds K] [--top N] [--config F] [TrainConfig flags]"""
    import warnings

    from ..issues import BUILTIN, LowAccuracyWarning, find_issues

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--method", default="cv")
    pre.add_argument("--folds", type=int, default=3)
    pre.add_argument("--top", type=int, default=10)
    pre.add_argument("--holdout", type=float, default=0.0)
    cfg, known = parse_config(
        argv,
        prog="noisyfit find-issues",
        pre=pre,
        description=(
            "Find the wrong labels of a dataset. Also: --method cv|incv|<any registered method> "
            "(default cv: K-fold cross-validated out-of-sample probabilities), --folds K (3), "
            "--top N (rows printed, 10), --holdout F (cv: share of rows no network trains "
            "on, still scored; default 0), --config FILE.yaml. Every row is examined. Your own "
            "data: --dataset arrays --data-dir data.npz --noise none (or imagefolder). "
            "Writes <out>/<name>/"
            "label_issues.csv, pred_probs.npy, issues_summary.json."
        ),
    )
    name = cfg.name or (
        f"issues-{cfg.dataset}-{known.method}-{cfg.noise}-s{cfg.seed}-"
        f"{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out = Path(cfg.out) / name
    if known.method not in BUILTIN:  # a training method's own run folder sits beside
        cfg = cfg.replace(name=f"{name}-run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowAccuracyWarning)  # printed below, with the summary
        res = find_issues(
            cfg, method=known.method, folds=known.folds, holdout=known.holdout, out=out
        )
    s = res.summary
    print(
        f"\n{s['num_issues']} of {s['num_samples']} labels flagged as issues "
        f"({known.method}, {s['wall_time_s']:.1f} s); {s['num_samples']} of "
        f"{s['num_rows_in_data']} rows of the data examined"
    )
    print(f"  flagged by {s.get('flagged_by', known.method)}")
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
    top = res.ranked()[: known.top]
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
