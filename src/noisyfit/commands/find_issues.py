"""``noisyfit find-issues``: train with a chosen method and write the label-issue table.

::

    noisyfit find-issues --method cv --folds 3 --dataset arrays --data-dir mine.npz --noise none
    noisyfit find-issues --method incv --dataset fashion-mnist --noise symmetric --noise-rate 0.4
    noisyfit find-issues --method coteaching ...          # any registered method

Writes ``<out>/<name>/label_issues.csv`` (cleanlab's columns: index, given_label,
suggested_label, is_label_issue, label_quality), ``pred_probs.npy`` (N, K) for
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
    from ..issues import find_label_issues

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--method", default="cv")
    pre.add_argument("--folds", type=int, default=3)
    pre.add_argument("--top", type=int, default=10)
    cfg, known = parse_config(
        argv,
        prog="noisyfit find-issues",
        pre=pre,
        description=(
            "Find the wrong labels of a dataset. Also: --method cv|incv|<any registered method> "
            "(default cv: K-fold cross-validated out-of-sample probabilities), --folds K (3), "
            "--top N (rows printed, 10), --config FILE.yaml. Your own data: --dataset arrays "
            "--data-dir data.npz --noise none (or imagefolder). Writes <out>/<name>/"
            "label_issues.csv, pred_probs.npy, issues_summary.json."
        ),
    )
    name = cfg.name or (
        f"issues-{cfg.dataset}-{known.method}-{cfg.noise}-s{cfg.seed}-"
        f"{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out = Path(cfg.out) / name
    if known.method not in ("cv", "incv"):  # the method's own run folder sits beside
        cfg = cfg.replace(name=f"{name}-run")
    res = find_label_issues(cfg, method=known.method, folds=known.folds, out=out)
    s = res.summary
    print(
        f"\n{s['num_issues']} of {s['num_samples']} labels flagged as issues "
        f"({known.method}, {s['wall_time_s']:.1f} s)"
    )
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
                f"#{i} {res.given_labels[i]}→{res.suggested_labels[i]} "
                f"(q {res.label_quality[i]:.2f})"
                for i in top
            )
        )
    print(f"  wrote {out / 'label_issues.csv'} and {out / 'pred_probs.npy'}")
    return 0
