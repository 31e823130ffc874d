"""IEG, L2R, IEG's ``supervised`` and plain ``standard`` on real Fashion-MNIST with label noise.

Setting (every method sees the same data): Fashion-MNIST from /usr/share/datasets (or
``--data-dir``), a seeded class-stratified training subset, 10 clean images per class held out
as the probe *before* noise is injected (removed from the noisy training set for every method,
as IEG's split), noise ``uniform`` 0.4 / 0.8 (IEG's kind: draw from all 10 classes, realized
wrong-label rate r·9/10) and ``pair`` 0.4, cnn-small, SGD momentum 0.9, lr 0.1, batch 100,
weight decay 5e-4, pad-crop + flip, clean test accuracy of the full 10 000-image test set after
the last epoch (the EMA weights for ieg, l2r, supervised), mean ± std over seeds. Time per step
is the mean training time per step (evaluation excluded) relative to ``standard`` measured in
the same cell (same noise, same seed, same process).

* ``standard``: noisyfit's default pipeline (step schedule ×0.2 at 50 % / 75 %, no EMA).
* ``supervised``: ``standard`` in IEG's pipeline (cosine restarts from 500 steps, EMA 0.999).
* ``l2r``: the IEG repository's L2R (meta step 0.1, weights from 0), cosine restarts, EMA.
* ``ieg``: IEG's defaults (p = 5, k = 20, AutoAugment, λ₀ 0.9, meta step 0.1 with momentum 0.9),
  cosine restarts, EMA, and a linear ramp-up of p and k over the first ``--rampup`` steps
  (default 500): from scratch a small CNN collapses to one class under p = 5 without it (the
  logit-normalised MixUp term dominates while guesses are random; see docs/methods/ieg.md).
* ``ieg-nokl`` (optional, ``--methods``): ``ieg`` with k = 0. On this small CNN the consistency
  to AutoAugment views costs 10-15 points (docs/benchmarks/ieg_family.md, ieg_ablation.md).

Budget (2 CPU cores): the committed table (5 methods × 3 noises × 2 seeds, 12 400 noisy images,
10 epochs = 1 240 steps: two full cosine cycles, 500 + 750 steps) took 48 min with ``--jobs 2``
(one torch thread per process: standard ≈ 28 ms/step, l2r ≈ 105-140 ms, ieg ≈ 220-260 ms).
``--quick`` (< 1 min) runs 1 seed of uniform 0.8 on 2 000 images for 2 epochs with a 2 000-image
test subset: a smoke test, not a result.

Writes Markdown to ``--out`` (default docs/benchmarks/ieg_family.md) and prints it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import bench_common as C
import numpy as np
import torch

from noisyfit.api import build_run, select_epoch
from noisyfit.config import TrainConfig
from noisyfit.engine.loop import fit

METHODS = ("standard", "supervised", "l2r", "ieg")
#: Optional extra rows (``--methods ... ieg-nokl``): IEG without the consistency term (k = 0).
VARIANTS = ("ieg-nokl",)
NOISES = (("uniform", 0.4), ("uniform", 0.8), ("pair", 0.4))


def run_one(
    method: str, noise: str, rate: float, seed: int, args, ieg_options: dict[str, str] | None = None
) -> dict:
    """Train one method in one cell; returns test accuracy, time per step and diagnostics.

    ``ieg_options`` change IEG's options beyond the benchmark's (``ieg-nokl``: k = 0)."""
    ieg_pipeline = method != "standard"
    opts: dict[str, str] = {}
    if method.startswith("ieg"):
        opts = {
            "aug_type": args.aug_type,
            "rampup_steps": str(args.rampup),
            **({"consistency_factor": "0"} if method == "ieg-nokl" else {}),
            **(ieg_options or {}),
        }
    if method == "supervised":  # IEG's supervised baseline: standard plus an EMA
        opts = {"ema_decay": "0.999"}
    cfg = TrainConfig(
        dataset="fashion-mnist",
        data_dir=args.data_dir,
        train_subset=args.train_subset,
        test_subset=args.test_subset,
        noise=noise,
        noise_rate=rate,
        noise_seed=seed,
        model="cnn-small",
        method={"supervised": "standard", "ieg-nokl": "ieg"}.get(method, method),
        method_options=opts,
        probe_per_class=10,
        epochs=args.epochs,
        batch_size=100,
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        augment=True,
        seed=seed,
        progress=False,
        lr_schedule="cosine-restarts" if ieg_pipeline else "step",
        checkpoint=False,
        device=args.device,
        eval_batch_size=1000,
        val_ratio=args.val_ratio,
    )
    run = build_run(cfg)  # the one run builder: seeded data, loaders, context, method
    m = run.method
    t0 = time.perf_counter()
    res = fit(m, run.train, run.test, cfg, true_labels=run.true_labels, val=run.ctx.val)
    wall = time.perf_counter() - t0
    h = res.history
    step_time = sum(r["epoch_time_s"] for r in h) / (len(run.train) * len(h))
    last = h[-1]
    sel = select_epoch(h)
    return {
        "acc": last["test_acc"],
        "selected": sel["selected_test_acc"],
        "selected_epoch": sel["selected_epoch"],
        "oracle": sel["best_test_acc"],
        "step_s": step_time,
        "wall_s": wall,
        "lp": last.get("label_precision"),
        "lr": last.get("label_recall"),
        "wp": last.get("weight_precision"),
        "realized": run.data.noisy.manifest.realized_rate,
        "n_train": len(run.data.dataset),
    }


def run_cell(job) -> tuple[tuple, list]:
    """Every method of one (noise, rate, seed) cell, in order, in this process."""
    (noise, rate, seed), args = job
    rows = []
    for method in args.methods:
        r = run_one(method, noise, rate, seed, args)
        rows.append((method, r))
        print(
            f"{noise} {rate} seed {seed} {method:<10} last {100 * r['acc']:.2f}%  "
            f"selected {100 * (r['selected'] or 0):.2f}% (epoch {r['selected_epoch']})  "
            f"{1000 * r['step_s']:.1f} ms/step  wall {r['wall_s']:.0f} s",
            flush=True,
        )
    return (noise, rate, seed), rows


def fmt(xs: list[float], pct: bool = True) -> str:
    k = 100 if pct else 1
    if len(xs) == 1:
        return f"{k * xs[0]:.2f}"
    return f"{k * statistics.mean(xs):.2f} ± {k * statistics.stdev(xs):.2f}"


def add_cell_args(p: argparse.ArgumentParser) -> None:
    """The options of one cell's runs (what ``run_one`` reads; shared with ieg_ablation.py)."""
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-subset", type=int, default=12500)
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--rampup", type=int, default=500, help="IEG ramp-up of p and k (steps)")
    p.add_argument("--aug-type", default="autoaug", choices=("autoaug", "randaug", "default"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--val-ratio",
        type=float,
        default=0.05,
        help="noisy validation split held out of the training images (model selection)",
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="≈1-2 min smoke run (1 seed, u0.8)")
    p.add_argument("--seeds", type=int, default=2)
    add_cell_args(p)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + VARIANTS)
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="(noise, seed) cells run at a time, each in its own process with one "
        "torch thread (times per step stay comparable within a cell)",
    )
    p.add_argument("--noises", nargs="+", default=None, help="e.g. uniform:0.8 pair:0.4")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks/ieg_family.md"))
    args = p.parse_args(argv)
    args.cmd = C.command("ieg_family.py", argv)
    noises = (
        NOISES
        if not args.noises
        else tuple((n.split(":")[0], float(n.split(":")[1])) for n in args.noises)
    )
    if args.quick:
        args.seeds, args.epochs, args.train_subset, args.test_subset = 1, 2, 2000, 2000
        args.rampup = min(args.rampup, 38)  # the whole quick run
        noises = (("uniform", 0.8),)
    cells = [(noise, rate, seed) for noise, rate in noises for seed in range(args.seeds)]
    results: dict[tuple, list[dict]] = {}
    t_all = time.perf_counter()
    jobs = [(c, args) for c in cells]
    with C.results(run_cell, jobs, args.jobs) as done:  # one (noise, seed) cell per worker
        for (noise, rate, seed), rows in done:
            for method, r in rows:
                results.setdefault((noise, rate, method), []).append({**r, "seed": seed})
    total = time.perf_counter() - t_all
    md = report(results, noises, args, total)
    C.publish(args.out, [md])
    return 0


def step_ratio(results, noises, method: str, args) -> str:
    """Mean time per step of ``method`` over standard's in the same (noise, seed) cells."""
    if "standard" not in args.methods:
        return "n/a"
    ratios = []
    for noise, rate in noises:
        base = {r["seed"]: r["step_s"] for r in results[(noise, rate, "standard")]}
        ratios += [r["step_s"] / base[r["seed"]] for r in results[(noise, rate, method)]]
    return f"{statistics.mean(ratios):.1f}×"


def report(results, noises, args, total) -> str:
    n_train = next(iter(results.values()))[0]["n_train"]
    lines = [
        "# IEG family on Fashion-MNIST"
        + (" — QUICK SMOKE RUN, not a result" if args.quick else ""),
        "",
        f"`{args.cmd}` — cnn-small, "
        f"{n_train} noisy training images (stratified subset) + 10 clean probe images per class "
        f"held out before noise, batch 100, {args.epochs} epochs "
        f"({args.epochs * -(-n_train // 100)} steps), lr 0.1, {args.seeds} seed(s), test set "
        f"{'first ' + str(args.test_subset) + ' images' if args.test_subset else '10 000 images'}"
        f"; IEG aug {args.aug_type}, ramp-up {args.rampup} steps"
        + f". Total {total / 60:.1f} min, "
        + (
            f"{args.jobs} worker processes with 1 torch thread each."
            if args.jobs > 1
            else f"{torch.get_num_threads()} torch threads."
        ),
        "",
        f"Clean test accuracy (%), mean ± std over seeds (EMA weights for supervised, l2r, "
        f"ieg): *selected* at the epoch of the best accuracy on a {args.val_ratio:.0%} noisy "
        "validation split (given labels, held out of the training images), *last* after the "
        "last epoch; *oracle* (max over epochs of test accuracy: the test set used for model "
        "selection, not a result) in the last table.",
        "",
    ]
    for key, title in (("selected", "selected"), ("acc", "last"), ("oracle", "oracle")):
        lines += [
            f"**{title}**",
            "",
            "| method | "
            + " | ".join(f"{n} {r}" for n, r in noises)
            + (" | time/step vs standard |" if key == "acc" else " |"),
            "|---|" + "---|" * len(noises) + ("---|" if key == "acc" else ""),
        ]
        for method in args.methods:
            cells = []
            for noise, rate in noises:
                xs = [r[key] for r in results[(noise, rate, method)] if r[key] is not None]
                cells.append(fmt(xs) if xs else "–")
            tail = f" | {step_ratio(results, noises, method, args)} |" if key == "acc" else " |"
            lines.append(f"| {method} | " + " | ".join(cells) + tail)
        lines.append("")
    lines += [
        "",
        "Selection diagnostics of the last epoch (label precision / recall of the "
        "examples with positive weight, share of the weight on clean examples):",
        "",
        "| method | noise | LP | LR | weight precision |",
        "|---|---|---|---|---|",
    ]
    for method in ("l2r", "ieg", "ieg-nokl"):
        if method not in args.methods:
            continue
        for noise, rate in noises:
            rs = results[(noise, rate, method)]
            vals = [np.mean([r[k] for r in rs]) for k in ("lp", "lr", "wp")]
            lines.append(
                f"| {method} | {noise} {rate} | "
                + " | ".join(f"{100 * v:.1f}" for v in vals)
                + " |"
            )
    realized = {
        f"{n} {r}": np.mean([x["realized"] for x in results[(n, r, args.methods[0])]])
        for n, r in noises
    }
    lines += [
        "",
        "Realized wrong-label rates: "
        + ", ".join(f"{k}: {100 * v:.1f}%" for k, v in realized.items())
        + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
