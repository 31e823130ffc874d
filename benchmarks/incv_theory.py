"""Benchmark: INCV's noisy cross-validation theory on real Fashion-MNIST (Verify_Theory).

For symmetric 0.2/0.5/0.8 and pair 0.2/0.4: train a network on one seeded noisy half of the
training set, predict the other half, and compare the measured test accuracy w.r.t. the noisy
labels, label precision and label recall (selection "prediction = given label") with the
theory from T (:mod:`noisyfit.analysis.incv`), and with the exact expectation from the
measured confusion M. Every check goes through ``noisyfit.commands.theory.noisy_cross_validation``
(the ``noisyfit theory`` command).

Protocol (scaled from the paper's ResNet-110, 200 epochs, Adam 1e-3 ×0.1 after 80/120/160 …):
the MLP (784-256-256-10, the CPU model that can memorise its half), Adam 1e-3, ×0.1 at 50 %
and 75 % of ``--epochs`` (40), batch 128, no augmentation, no weight decay (the theory is about
a network that fits its noisy half), the full 60 000-image training set (two halves of
30 000); noise seed = training seed = 0.

The figure's curves also get the points of a sweep over ε = 0, 0.1, …, 0.9 for both kinds
(``--sweep``, on by default in the full run; the table keeps the five settings above).

Budget: 20 trainings × 30 000 images × 40 epochs = 24 M image-steps of the MLP on one thread
(≈ 19 000 images/s measured here with ``--threads 1``; two threads on the shared 2-core
machine ran at ≈ 2 000 images/s) ≈ 25–35 min; without ``--sweep`` 5 trainings, ≈ 8 min.
``--quick``: the five settings on a 6 000-image subset, 10 epochs (≈ 30 s; a smoke test, not a
result).

Output (``--out``, default ``docs/benchmarks/``): ``incv_theory.md`` (tables),
``incv_theory.json``, ``incv_theory_curves.png`` (measured vs theory) and
``incv_confusion_pair0.4.png``, ``incv_confusion_symmetric0.8.png`` (M beside T). The quick run
writes the same files, titled as a smoke run.

    python benchmarks/incv_theory.py            # full
    python benchmarks/incv_theory.py --quick    # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from noisyfit.commands.theory import QUANTITIES, plot_confusion, plot_curves, sweep_table
from noisyfit.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (
    ("symmetric", 0.2),
    ("symmetric", 0.5),
    ("symmetric", 0.8),
    ("pair", 0.2),
    ("pair", 0.4),
)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="6 000-image subset, 10 epochs")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--train-subset", type=int, default=None, help="default: all 60 000")
    p.add_argument("--model", default="mlp")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: fastest for these small models on a shared CPU)",
    )
    p.add_argument(
        "--no-sweep",
        dest="sweep",
        action="store_false",
        help="only the five table settings (no extra points for the figure)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs, a.train_subset, a.sweep = 10, 6000, False
    return a


def config(a, noise: str, rate: float) -> TrainConfig:
    return TrainConfig(
        dataset="fashion-mnist",
        data_dir=a.data_dir,
        train_subset=a.train_subset,
        test_subset=1000,
        noise=noise,
        noise_rate=rate,
        noise_seed=a.seed,
        model=a.model,
        epochs=a.epochs,
        batch_size=128,
        optimizer="adam",
        lr=a.lr,
        momentum=0.9,
        weight_decay=0.0,
        lr_schedule="step",
        lr_milestones=(0.5, 0.75),
        lr_decay=0.1,
        augment=False,
        seed=a.seed,
        device="cpu",
        progress=False,
        checkpoint=False,
    )


def main(argv=None) -> int:
    from noisyfit.commands.theory import noisy_cross_validation

    a = parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    results = []
    t0 = time.perf_counter()
    grid = [(k, r / 10) for k in ("symmetric", "pair") for r in range(10)] if a.sweep else []
    todo = list(SETTINGS) + [
        s for s in grid if not any(s[0] == k and abs(s[1] - r) < 1e-9 for k, r in SETTINGS)
    ]
    for noise, rate in todo:
        t1 = time.perf_counter()
        r = noisy_cross_validation(config(a, noise, rate), split_seed=a.seed)
        r["wall_time_s"] = time.perf_counter() - t1
        results.append(r)
        m, t = r["measured"], r["theory"]
        print(
            f"{noise} {rate:g}: acc {m['test_acc']:.3f} (theory {t['test_acc']:.3f}), "
            f"LP {m['label_precision']:.3f} ({t['label_precision']:.3f}), "
            f"LR {m['label_recall']:.3f} ({t['label_recall']:.3f}), "
            f"{r['wall_time_s']:.0f} s",
            flush=True,
        )
    total = time.perf_counter() - t0
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "incv_theory.json").write_text(json.dumps(results, indent=1))
    plot_curves(results, a.out / "incv_theory_curves.png", 10)
    table_rows = results[: len(SETTINGS)]
    sweep_rows = sorted(results, key=lambda r: (r["noise"], r["noise_rate"]))
    for r in results:
        if (r["noise"], r["noise_rate"]) in (("pair", 0.4), ("symmetric", 0.8)):
            plot_confusion(r, a.out / f"incv_confusion_{r['noise']}{r['noise_rate']:g}.png")
    detail = [
        "| noise | quantity | measured | theory (T) | theory (realized T) | "
        "from measured M | measured − theory |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table_rows:
        for key, label in QUANTITIES:
            m = r["measured"][key]
            detail.append(
                f"| {r['noise']} {r['noise_rate']:g} | {label} | {m:.4f} | "
                f"{r['theory'][key]:.4f} | {r['theory_realized_T'][key]:.4f} | "
                f"{r['from_measured_M'][key]:.4f} | {m - r['theory'][key]:+.4f} |"
            )
    diag = [
        "| noise | mean diag(M) | mean diag(T) | M of the flip target (pair) |",
        "|---|---|---|---|",
    ]
    for r in table_rows:
        mm, tt = torch.tensor(r["M"]), torch.tensor(r["T"])
        k = len(mm)
        nxt = (
            f"{float(mm[torch.arange(k), (torch.arange(k) + 1) % k].mean()):.3f}"
            if r["noise"] == "pair"
            else "–"
        )
        diag.append(
            f"| {r['noise']} {r['noise_rate']:g} | {float(mm.diagonal().mean()):.3f} | "
            f"{float(tt.diagonal().mean()):.3f} | {nxt} |"
        )
    n_half = results[0]["train_size"]
    md = [
        "# INCV theory check on Fashion-MNIST"
        + (" (quick smoke run — not a result)" if a.quick else ""),
        "",
        f"Generated by `python benchmarks/incv_theory.py{' --quick' if a.quick else ''}` in "
        f"{total / 60:.1f} min ({torch.get_num_threads()} torch thread(s), CPU).",
        "",
        f"Setup: Fashion-MNIST training set"
        f"{'' if a.train_subset is None else f' (stratified subset of {a.train_subset})'}, "
        f"one seeded random half ({n_half} images) for training, the other half held out; "
        f"model `{a.model}`, {a.epochs} epochs, Adam lr {a.lr:g} ×0.1 at 50 %/75 %, batch 128, "
        "no augmentation, no weight decay; noise and training seed "
        f"{a.seed}. Theory (T): the paper's formulas from the nominal T; realized T: the same "
        "formulas from the noise realized on the held-out half (and its class prior); from "
        "measured M: Σ_i π_i Σ_j M_ij T_ij etc., the exact expectation for the measured "
        "confusion M.",
        "",
        "## Measured vs theory",
        "",
        sweep_table(table_rows),
        "",
        "## Every column",
        "",
        *detail,
        "",
        "## Confusion M vs T",
        "",
        *diag,
        "",
        "Figures: `incv_theory_curves.png` (measured vs theory against ε), "
        "`incv_confusion_pair0.4.png`, `incv_confusion_symmetric0.8.png`.",
        "",
    ]
    if a.sweep:
        md += ["## The sweep behind the figure", "", sweep_table(sweep_rows), ""]
    (a.out / "incv_theory.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
