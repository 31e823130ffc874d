"""Benchmark: the INCV table on real Fashion-MNIST — clean test accuracy of standard,
F-correction, Decoupling, Co-teaching, MentorNet, D2L and INCV.

Grid: 7 methods × {symmetric 0.2, 0.5, 0.8, pair 0.4} × 2 seeds (training seed = noise seed),
every run through ``noisyfit.train`` in this process.

Protocol (the INCV paper re-ran every method in one framework: ResNet-32, Adam 1e-3, 200
epochs, ×0.1 at 80/120/160, ×0.5 at 180), scaled to 2 CPU cores:

* the MLP (784-256-256-10), a fixed class-stratified subset of ``--train-subset`` (20 000)
  training images, all 10 000 clean test images, ``--epochs`` (30) epochs, batch 128, Adam
  lr 1e-3 ×0.1 at 40 %/60 %/80 % of the epochs, weight decay 1e-4 (INCV's L2), no
  augmentation, one torch thread;
* scaled method settings (defaults in brackets): Co-teaching T_k = INCV's T_k = 5 % of the
  epochs [10 of 200], τ = the nominal rate; INCV 4 iterations of ``--cv-epochs`` = half the
  epochs [50 for 200], e_warm 20 %/40 % of the epochs [40/80 of 200]; F-correction's first
  run the full ``--epochs``; MentorNet p = 0.75 (0.5 at symmetric 0.8, as its commands),
  dropout "0.5,17,0.05,83"; D2L init_epoch 5, window 5; Decoupling init_iter 0.

Accuracy (clean test, mean ± std over the seeds), under the noisy-validation protocol: a
``--val-ratio`` (5 %) split of the noisy training subset is held out; *selected* is the test
accuracy at the epoch of the best accuracy on it, *last* the final epoch's (the INCV table
reports the final accuracy), *oracle* the maximum over epochs (test set as validation: not a
result).

Budget (measured here on one thread, symmetric 0.5: standard 31 s, D2L 26 s, MentorNet 40 s,
INCV 75 s; two-network methods and F-correction ≈ 2 × standard): ≈ 6 min per (noise, seed)
group, 8 groups ≈ 45–60 min. ``--quick``: symmetric 0.5 only, 1 seed, a 3 000-image subset,
8 epochs, INCV 2 iterations of 4 epochs (≈ 20 s; a smoke test, not a result).

Output: ``docs/benchmarks/incv_training.md`` (table) and ``incv_training.csv`` (one row per
run).

    python benchmarks/incv_training.py            # full
    python benchmarks/incv_training.py --quick    # smoke
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import noisyfit
from noisyfit.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("standard", "f-correction", "decoupling", "coteaching", "mentornet", "d2l", "incv")
NOISES = (("symmetric", 0.2), ("symmetric", 0.5), ("symmetric", 0.8), ("pair", 0.4))
PAPER = {  # INCV README table, CIFAR-10, ResNet-32 (%, 5 runs)
    "f-correction": ("85.08±0.43", "76.02±0.19", "34.76±4.53", "83.55±2.15"),
    "decoupling": ("86.72±0.32", "79.31±0.62", "36.90±4.61", "75.27±0.83"),
    "coteaching": ("89.05±0.32", "82.12±0.59", "16.21±3.02", "84.55±2.81"),
    "mentornet": ("88.36±0.46", "77.10±0.44", "28.89±2.29", "77.33±0.79"),
    "d2l": ("86.12±0.43", "67.39±13.62", "10.02±0.04", "85.57±1.21"),
    "incv": ("89.71±0.18", "84.78±0.33", "52.27±3.50", "86.04±0.54"),
}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="symmetric 0.5, 1 seed, tiny subset")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--cv-epochs", type=int, default=None, help="INCV (default: epochs / 2)")
    p.add_argument("--iterations", type=int, default=4, help="INCV iterations")
    p.add_argument("--train-subset", type=int, default=20000)
    p.add_argument("--test-subset", type=int, default=None, help="default: all 10 000")
    p.add_argument("--model", default="mlp")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument(
        "--noises",
        nargs="+",
        default=[f"{k}:{r}" for k, r in NOISES],
        help="noise kinds and rates as KIND:RATE",
    )
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--val-ratio",
        type=float,
        default=0.05,
        help="noisy validation split held out of the training subset (model selection)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    p.add_argument("--runs", type=Path, default=None, help="run folders (default: a temp dir)")
    a = p.parse_args(argv)
    a.noises = [(n.split(":")[0], float(n.split(":")[1])) for n in a.noises]
    if a.quick:
        a.epochs, a.train_subset, a.test_subset = 8, 3000, 2000
        a.seeds, a.noises, a.iterations, a.cv_epochs = [0], [("symmetric", 0.5)], 2, 4
    if a.cv_epochs is None:
        a.cv_epochs = max(1, a.epochs // 2)
    return a


def method_options(method: str, noise: str, rate: float, a) -> dict[str, str]:
    t_k = str(max(1, round(0.05 * a.epochs)))
    if method == "coteaching":
        return {"t_k": t_k}
    if method == "incv":
        return {"iterations": str(a.iterations), "cv_epochs": str(a.cv_epochs), "t_k": t_k}
    if method == "mentornet":
        return {"p": "0.5" if (noise, rate) == ("symmetric", 0.8) else "0.75"}
    return {}


def run_one(method, noise, rate, seed, a, runs: Path, options=None, tag="", **overrides) -> dict:
    """One run of the table's setting; ``options`` are added to the method's options and
    ``overrides`` replace TrainConfig fields (benchmarks/fidelity_before_after.py)."""
    cfg = TrainConfig(
        dataset="fashion-mnist",
        data_dir=a.data_dir,
        train_subset=a.train_subset,
        test_subset=a.test_subset,
        noise=noise,
        noise_rate=rate,
        noise_seed=seed,
        model=a.model,
        method=method,
        method_options={**method_options(method, noise, rate, a), **(options or {})},
        epochs=a.epochs,
        batch_size=128,
        optimizer="adam",
        lr=1e-3,
        momentum=0.9,
        weight_decay=1e-4,
        lr_schedule="step",
        lr_milestones=(0.4, 0.6, 0.8),
        lr_decay=0.1,
        augment=False,
        val_ratio=a.val_ratio,
        seed=seed,
        device="cpu",
        out=str(runs),
        name=f"{method}{tag}-{noise}{rate}-s{seed}",
        progress=False,
        checkpoint=False,
    ).replace(**overrides)
    t0 = time.perf_counter()
    r = noisyfit.train(cfg)
    wall = time.perf_counter() - t0
    last = r.history[-1]
    return {
        "method": method,
        "noise": noise,
        "rate": rate,
        "seed": seed,
        "selected_acc": r.summary["selected_test_acc"],
        "selected_epoch": r.summary["selected_epoch"],
        "last_acc": r.summary["last_test_acc"],
        "best_acc": r.summary["best_test_acc"],
        "label_precision": last.get("label_precision"),
        "label_recall": last.get("label_recall"),
        "wall_s": wall,
        "options": " ".join(f"{k}={v}" for k, v in cfg.method_options.items()),
    }


def _ms(xs) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    m = 100 * statistics.mean(xs)
    s = 100 * statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.2f} ± {s:.2f}"


def table(rows: list[dict], a, key: str) -> str:
    """One Markdown table of ``key`` (selected_acc / last_acc / best_acc): method × noise."""
    noises = list(dict.fromkeys((r["noise"], r["rate"]) for r in rows))
    head = "| method | " + " | ".join(f"{n} {r:g}" for n, r in noises) + " |"
    out = [head, "|---|" + "---|" * len(noises)]
    for m in a.methods:
        cells = []
        for n, rate in noises:
            rs = [r for r in rows if (r["method"], r["noise"], r["rate"]) == (m, n, rate)]
            cells.append(_ms([r[key] for r in rs]) if rs else "–")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def ranking(rows: list[dict], a, key: str = "selected_acc") -> list[str]:
    notes = []
    for n, rate in dict.fromkeys((r["noise"], r["rate"]) for r in rows):
        means = {}
        for m in a.methods:
            xs = [r[key] for r in rows if (r["method"], r["noise"], r["rate"]) == (m, n, rate)]
            if xs:
                means[m] = (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)
        if not means:
            continue
        best = max(means, key=lambda m: means[m][0])
        line = f"{n} {rate:g}: best {best} ({100 * means[best][0]:.2f})"
        if "incv" in means and best != "incv":
            gap = 100 * (means[best][0] - means["incv"][0])
            noise_pts = 100 * max(means[best][1], means["incv"][1])
            line += (
                f"; INCV {gap:.2f} points behind "
                f"({'within' if gap <= 2 * max(noise_pts, 0.1) else 'outside'} twice the "
                "larger seed std)"
            )
        notes.append(line)
    return notes


def main(argv=None) -> int:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    runs = a.runs or Path(tempfile.mkdtemp(prefix="incv-training-"))
    rows = []
    t0 = time.perf_counter()
    for seed in a.seeds:
        for noise, rate in a.noises:
            for method in a.methods:
                r = run_one(method, noise, rate, seed, a, runs)
                rows.append(r)
                print(
                    f"{method:12s} {noise} {rate:g} seed {seed}: selected "
                    f"{r['selected_acc']:.4f} last {r['last_acc']:.4f} "
                    f"oracle {r['best_acc']:.4f} ({r['wall_s']:.0f} s)",
                    flush=True,
                )
    total = time.perf_counter() - t0
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "incv_training.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    times = {}
    for r in rows:
        times.setdefault(r["method"], []).append(r["wall_s"])
    paper = ["| method | sym 0.2 | sym 0.5 | sym 0.8 | asym (pair) 0.4 |", "|---|---|---|---|---|"]
    paper += [f"| {m} | " + " | ".join(v) + " |" for m, v in PAPER.items()]
    t_k = max(1, round(0.05 * a.epochs))
    md = [
        "# The INCV table on Fashion-MNIST"
        + (" (quick smoke run — not a result)" if a.quick else ""),
        "",
        f"Generated by `python benchmarks/incv_training.py{' --quick' if a.quick else ''}` in "
        f"{total / 60:.1f} min ({torch.get_num_threads()} torch thread(s), CPU).",
        "",
        f"Setup: Fashion-MNIST, fixed stratified train subset of {a.train_subset} images, "
        f"{'all 10 000' if a.test_subset is None else a.test_subset} clean test images, model "
        f"`{a.model}`, {a.epochs} epochs, batch 128, Adam lr 1e-3 ×0.1 at 40/60/80 %, weight "
        f"decay 1e-4, no augmentation; seeds {', '.join(map(str, a.seeds))} (training and "
        f"noise seed). Scaled settings: Co-teaching and INCV T_k = {t_k}; INCV "
        f"{a.iterations} iterations × {a.cv_epochs} epochs, e_warm 20 %/40 % of the epochs; "
        "MentorNet p 0.75 (0.5 at symmetric 0.8); D2L init_epoch 5, window 5; τ = nominal.",
        "",
        "Clean test accuracy (%), mean ± std over seeds. **Selected**: at the epoch of the best "
        f"accuracy on a {a.val_ratio:.0%} noisy validation split (given labels, held out of "
        "the training subset; INCV: its final Co-teaching stage's epochs; F-correction's "
        "T̂ network is chosen on the same split, by its loss). **Last**: the final epoch (the "
        "INCV table's protocol). **Oracle**: the maximum over epochs of test accuracy (the "
        "test set used for model selection: not a result).",
        "",
        "**selected**",
        "",
        table(rows, a, "selected_acc"),
        "",
        "Best method per noise, on selected accuracy:",
        "",
        *[f"* {n}" for n in ranking(rows, a)],
        "",
        "**last**",
        "",
        table(rows, a, "last_acc"),
        "",
        "**oracle** (not a result)",
        "",
        table(rows, a, "best_acc"),
        "",
        "Mean wall time per run (s): "
        + ", ".join(f"{m} {statistics.mean(v):.0f}" for m, v in times.items())
        + ".",
        "",
        "For reference, the INCV paper's table (CIFAR-10, ResNet-32, 200 epochs, %):",
        "",
        *paper,
        "",
    ]
    (a.out / "incv_training.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
