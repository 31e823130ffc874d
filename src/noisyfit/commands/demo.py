"""``noisyfit demo``: plain training vs robust methods, side by side, on noisy Fashion-MNIST.

Defaults: Fashion-MNIST with 40 % symmetric label noise, all 60 000 training images and the
10 000 clean test images, the ``mlp`` network (it memorizes the noisy labels within the run,
so plain training visibly falls behind), SGD lr 0.02 with the SELFIE step schedule, 40 epochs,
a 5 % noisy validation split (``val_ratio``) that selects each method's epoch (the table's
headline: selected and last). Methods: ``standard`` against Co-teaching, SELFIE and INCV
(:data:`DEFAULT_METHODS`); any registered method can be given with ``--methods``, with its own
defaults unless its ``short_run_options`` (a class attribute) scale them to the short run
(warm-up / T_k a quarter of the epochs, SELFIE one round, INCV cross-validation networks of
half the epochs). Measured on 2 CPU cores, nothing else running: 7 min 53 s for the four
default methods (standard 52 s, Co-teaching 86 s, SELFIE 60 s, INCV 263 s of training; the same
machine gave 9 min 54 s an hour earlier: its speed varies by 20-50 %);
``--override train_subset=10000`` takes about 2 minutes.

Writes ``<out>/demo-<time>/``: one run folder per method (each with its HTML report),
``demo.md`` / ``demo.csv`` (the table), ``index.html`` (the table, the test-accuracy curves of
every method, links to every report) and, from the most accurate robust method, its suspected
label errors ``label_issues.csv`` + ``pred_probs.npy`` (and ``report/`` of that run shows them
as images).
"""

from __future__ import annotations

import base64
import csv
import html
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import report_run, train
from ..cli import command, parse_args
from ..config import KeyValues, Names, from_dict
from ..issues import issues_from_run
from ..methods.base import METHODS
from ..report import CSS, _plt, _series

#: Methods run by default, in order (names not registered are skipped).
DEFAULT_METHODS = ("standard", "coteaching", "selfie", "incv")

DEMO_CONFIG: dict[str, Any] = dict(
    dataset="fashion-mnist",
    noise="symmetric",
    noise_rate=0.4,
    model="mlp",
    train_subset=None,
    epochs=40,
    batch_size=128,
    optimizer="sgd",
    lr=0.02,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    lr_schedule="step",
    lr_milestones=[0.5, 0.75],
    lr_decay=0.2,
    normalize="per-image",
    augment=False,
    progress=False,
    val_ratio=0.05,  # a 5 % noisy validation split selects the epoch (no clean labels used)
)


def _options(method: str, epochs: int) -> dict[str, str]:
    """The method's own ``short_run_options`` for a run of ``epochs`` epochs."""
    fill = {
        "epochs": str(epochs),
        "quarter": str(max(1, epochs // 4)),
        "half": str(max(1, epochs // 2)),
        "twentieth": str(max(1, epochs // 20)),
    }
    opts = METHODS.get(method).short_run_options
    return {k: v.format(**fill) for k, v in opts.items()}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        xs, ys = _series(r["history"], "test_acc")
        ax.plot(xs, ys, label=r["method"])
    ax.set(xlabel="epoch", ylabel="clean test accuracy", title="clean test accuracy per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass
class DemoArgs:
    """Train standard and robust methods side by side on noisy Fashion-MNIST and compare
    clean test accuracy, label precision/recall and time."""

    methods: Names | None = None
    """Methods to compare (default: standard coteaching selfie incv; `noisyfit list
    methods`)."""
    out: str = "runs"
    """Parent folder of the demo folder."""
    seed: int = 0
    override: KeyValues = field(default_factory=dict)
    """Change demo config fields, e.g. epochs=10 train_subset=5000 data_dir=/data/fmnist
    (values are read by the fields' types)."""


@command(
    "demo",
    help="the main job: standard vs robust methods on Fashion-MNIST with 40% "
    "symmetric noise (8-10 min on 2 CPU cores); table, reports, suspected label errors",
)
def cmd_demo(argv: Sequence[str]) -> int:
    a = parse_args(DemoArgs, argv, prog="noisyfit demo")
    methods = a.methods or [m for m in DEFAULT_METHODS if m in METHODS]
    for m in methods:
        METHODS.get(m)
    base = from_dict({**DEMO_CONFIG, "seed": a.seed, **a.override}).to_dict()  # checked now
    folder = Path(a.out) / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"demo: {', '.join(methods)} on {base['dataset']} with {base['noise']} noise "
        f"{base['noise_rate']:g}, {base['epochs']} epochs each; runs in {folder}"
    )
    results = []
    t_all = time.perf_counter()
    for m in methods:
        cfg = from_dict(
            {
                **base,
                "method": m,
                "method_options": _options(m, base["epochs"]),
                "out": str(folder),
                "name": m,
            }
        )
        t0 = time.perf_counter()
        res = train(cfg)
        s = res.summary
        results.append(
            {"method": m, "res": res, "history": res.history, "time_s": s["wall_time_s"], **s}
        )
        print(
            f"  {m}: clean test accuracy selected {_pct(s['selected_test_acc'])} % (epoch "
            f"{s['selected_epoch']}), last {_pct(s['last_test_acc'])} % (oracle max "
            f"{_pct(s['best_test_acc'])}), LP {_pct(s['last_label_precision'])}, "
            f"LR {_pct(s['last_label_recall'])}, training {s['wall_time_s']:.0f} s "
            f"({time.perf_counter() - t0:.0f} s with data and report)"
        )
    # the table
    head = [
        "method",
        "clean test acc (selected)",
        "clean test acc (last)",
        "oracle: max over epochs of test acc",
        "label precision",
        "label recall",
        "training time (s)",
    ]
    rows = [
        [
            r["method"],
            _pct(r["selected_test_acc"]),
            _pct(r["last_test_acc"]),
            _pct(r["best_test_acc"]),
            _pct(r["last_label_precision"]),
            _pct(r["last_label_recall"]),
            f"{r['time_s']:.0f}",
        ]
        for r in results
    ]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    with open(folder / "demo.csv", "w", newline="") as f:
        csv.writer(f).writerows([head, *rows])
    realized = results[0].get("realized_noise_rate") if results else None
    note = (
        f"{base['dataset']}, {base['noise']} noise {base['noise_rate']:g} (realized "
        f"{_pct(realized)} %), {base['model']}, {base['epochs']} epochs, "
        f"{'all' if base.get('train_subset') is None else base['train_subset']} "
        f"training images; selected: clean test accuracy at the epoch of the best "
        f"accuracy on a {_pct(base.get('val_ratio') or 0)} % noisy validation split (given "
        f"labels), last: after the last epoch, oracle: the maximum over epochs (chosen on the "
        f"test set, not a result); LP/LR: label precision/recall of the last epoch's "
        f"selection (%); total {time.perf_counter() - t_all:.0f} s"
    )
    (folder / "demo.md").write_text("\n".join(["# noisyfit demo", "", note, "", *md]) + "\n")
    print()
    print("\n".join(md))
    print(f"\n{note}")
    # suspected label errors from the robust method (or the only method) with the best
    # noisy-validation accuracy (no clean label chooses it; without a split: last test acc)
    robust = [r for r in results if not METHODS.get(r["method"]).baseline] or results
    best = max(robust, key=lambda r: r.get("selected_val_acc") or r["last_test_acc"] or 0)
    issues = issues_from_run(best["res"], out=folder)
    try:  # the run's report then shows these as its suspected errors
        issues_from_run(best["res"])
        report_run(best["res"].run_dir, log=None)
    except Exception as e:  # noqa: BLE001
        print(f"  (report of {best['method']} not refreshed: {e})")
    s = issues.summary
    extra = ""
    if s.get("error_precision") is not None:
        extra = (
            f"; {_pct(s['error_precision'])} % of them are truly wrong, "
            f"{_pct(s.get('error_recall'))} % of the wrong labels found"
        )
    print(
        f"suspected label errors ({best['method']}): {s['num_issues']} flagged{extra}; "
        f"{folder / 'label_issues.csv'}"
    )
    # index page
    _plot(results, folder / "test_acc.png")
    img = base64.b64encode((folder / "test_acc.png").read_bytes()).decode("ascii")
    links = "".join(
        f'<li><a href="{html.escape(r["method"])}/report/index.html">'
        f"{html.escape(r['method'])}</a></li>"
        for r in results
    )
    table = (
        "<table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        + "</table>"
    )
    (folder / "index.html").write_text(
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>noisyfit demo</title>"
        f"<style>{CSS}</style></head><body><h1>noisyfit demo</h1><p>{html.escape(note)}</p>"
        f'{table}<h2>Clean test accuracy</h2><img src="data:image/png;base64,{img}" '
        f'alt="test accuracy"><h2>Run reports</h2><ul>{links}</ul><p>Suspected label '
        f"errors ({html.escape(best['method'])}): label_issues.csv, pred_probs.npy; images in "
        f"its report.</p></body></html>\n",
        encoding="utf-8",
    )
    print(f"report: {folder / 'index.html'}")
    return 0
