"""Before / after the fidelity fixes of issue 12: each fixed rule against the rule it replaced
(kept as an option), in the INCV table's setting (benchmarks/incv_training.py: MLP, 20 000
Fashion-MNIST images of which a 5 % noisy validation split, 30 epochs, Adam 1e-3), same seeds,
same data, one torch thread per process.

* INCV stage 2: S-batches of b and an inference-mode ranking (INCV_main.py; after) against
  batches over all N with a training-mode ranking (``batches all rank train``; before).
* MentorNet: weight decay × Σv/b in the loss (cifar_train_mentornet.py:228; after) against the
  optimizer's plain decay (``decay_scaling off``; before).
* Co-teaching's official Adam plan: constant, then linearly to 0 with β1 0.9 → 0.1 from 40 %
  of the epochs (bhanML main.py, 80 of 200, scaled; after) against a constant learning rate
  (the official preset before the fix).

IEG's fix (gradient through the guess, interleaved probe batches, strong view from the crop)
is a row of benchmarks/ieg_ablation.py; F-correction's is benchmarks/f_correction_check.py.

    python benchmarks/fidelity_before_after.py [--jobs 2] [--seeds 0 1]
        [--noises symmetric:0.5 pair:0.4] [--out docs/benchmarks/fidelity_before_after.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_common as C  # noqa: E402
import incv_training as T  # noqa: E402

#: fix -> (method, {"before": (method options, TrainConfig changes), "after": (...)});
#: a ``None`` changes entry is filled from the epochs (Co-teaching's decay start).
FIXES = {
    "INCV stage 2: S-batches, inference-mode ranking": (
        "incv",
        {"before": ({"batches": "all", "rank": "train"}, {}), "after": ({}, {})},
    ),
    "MentorNet: weight decay × Σv/b": (
        "mentornet",
        {"before": ({"decay_scaling": "off"}, {}), "after": ({}, {})},
    ),
    "Co-teaching: official Adam plan (linear decay, β1 → 0.1)": (
        "coteaching",
        {"before": ({}, {"lr_schedule": "constant"}), "after": ({}, None)},
    ),
}


def run(job) -> tuple:
    fix, when, noise, rate, seed, a, runs = job
    torch.set_num_threads(1)
    method, rules = FIXES[fix]
    options, changes = rules[when]
    if changes is None:  # the official plan: decay from 80 of 200 epochs, scaled
        changes = {
            "lr_schedule": "linear-decay",
            "lr_decay_start": max(1, round(0.4 * a.epochs)),
            "beta1_after_decay": 0.1,
        }
    r = T.run_one(method, noise, rate, seed, a, runs, options=options, tag=f"-{when}", **changes)
    print(
        f"{fix} [{when}] {noise} {rate:g} seed {seed}: selected {100 * r['selected_acc']:.2f} "
        f"last {100 * r['last_acc']:.2f} ({r['wall_s']:.0f} s)",
        flush=True,
    )
    return fix, when, noise, rate, seed, r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--fixes", nargs="+", type=int, default=None, help="0-based rows of FIXES")
    p.add_argument("--out", type=Path, default=T.ROOT / "docs/benchmarks/fidelity_before_after.md")
    a, rest = p.parse_known_args(argv)
    b = T.parse(["--noises", "symmetric:0.5", "pair:0.4", *rest])  # the INCV table's settings
    fixes = [list(FIXES)[i] for i in a.fixes] if a.fixes else list(FIXES)
    runs = Path(tempfile.mkdtemp(prefix="fidelity-"))
    jobs = [
        (fix, when, noise, rate, seed, b, runs)
        for fix in fixes
        for noise, rate in b.noises
        for seed in b.seeds
        for when in ("before", "after")
    ]
    t0 = time.perf_counter()
    with C.results(run, jobs, a.jobs) as done:
        done = list(done)
    minutes = (time.perf_counter() - t0) / 60
    res = {(f, w, n, r, s): x for f, w, n, r, s, x in done}

    def ms(xs, sign=False):
        m = f"{100 * statistics.mean(xs):{'+' if sign else ''}.2f}"
        return m if len(xs) == 1 else f"{m} ± {100 * statistics.stdev(xs):.2f}"

    lines = [
        "# Fidelity fixes: before / after",
        "",
        f"`{C.command('fidelity_before_after.py', argv)}` ({minutes:.0f} min, {a.jobs} "
        "process(es) of one torch thread). The INCV table's "
        f"setting (benchmarks/incv_training.py): MLP, {b.train_subset} Fashion-MNIST images of "
        f"which a {b.val_ratio:.0%} noisy validation split, {b.epochs} epochs, Adam 1e-3 (×0.1 "
        "at 40/60/80 % except where a row changes the schedule), batch 128, seeds "
        f"{b.seeds} (noise and training). Clean test accuracy (%), mean ± std over seeds: "
        "*selected* at the epoch of the best noisy-validation accuracy, *last* after the last "
        "epoch; Δ = after − before, paired by seed.",
        "",
        "| fix | noise | before: selected / last | after: selected / last | Δ selected | Δ last |",
        "|---|---|---|---|---|---|",
    ]
    for fix in fixes:
        for noise, rate in b.noises:
            got = {w: [res[(fix, w, noise, rate, s)] for s in b.seeds] for w in ("before", "after")}
            sl = {
                w: [ms([r[k] for r in got[w]]) for k in ("selected_acc", "last_acc")] for w in got
            }
            deltas = [
                ms([y[k] - x[k] for x, y in zip(got["before"], got["after"], strict=True)], True)
                for k in ("selected_acc", "last_acc")
            ]
            lines.append(
                f"| {fix} | {noise} {rate:g} | {' / '.join(sl['before'])} | "
                f"{' / '.join(sl['after'])} | {deltas[0]} | {deltas[1]} |"
            )
    C.publish(a.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
