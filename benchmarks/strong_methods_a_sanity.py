"""Sanity runs of dividemix, elr, elr-plus and the --ema / --mixup add-ons (issue 14, part A).

Fashion-MNIST, a stratified 5 000-image training subset, ``mlp``, symmetric noise 0.5 (or
``--noise-rate``), seed 0,
the engine's default optimizer (SGD lr 0.1, step schedule), all 10 000 test images. One seed:
a check that the methods learn, not the benchmark (that is ``benchmarks/sweeps/``).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/strong_methods_a_sanity.py \\
        --epochs 30 --warm-up 5 --out docs/benchmarks/strong_methods_a_sanity_30.jsonl

Each line of the output is one run: last / best test accuracy, label precision / recall of the
last epoch, and the mean CPU seconds per epoch of the (1-thread) process.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import noisyfit

RUNS = [
    ("standard", {}, {}),
    ("standard", {}, {"ema": 0.99}),
    ("standard", {}, {"mixup": 1.0}),
    ("elr", {}, {}),
    ("elr-plus", {}, {}),
    ("dividemix", {"warm_up": None}, {}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--warm-up", type=int, default=3, help="DivideMix warm-up epochs")
    ap.add_argument("--noise-rate", type=float, default=0.5, help="symmetric noise rate")
    ap.add_argument("--lr", type=float, default=0.1, help="initial learning rate")
    ap.add_argument("--out", default="strong_methods_a_sanity.jsonl")
    ap.add_argument("--runs-dir", default="/tmp/strong_methods_a_runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = dict(
        dataset="fashion-mnist",
        train_subset=5000,
        model="mlp",
        noise="symmetric",
        noise_rate=args.noise_rate,
        epochs=args.epochs,
        lr=args.lr,
        seed=0,
        progress=False,
        report=False,
        checkpoint=False,
        out=args.runs_dir,
    )
    with open(args.out, "w") as f:
        for method, opts, extra in RUNS:
            opts = {k: str(args.warm_up) if v is None else v for k, v in opts.items()}
            tag = method + "".join(f" --{k} {v}" for k, v in extra.items())
            r = noisyfit.train(
                **base, method=method, method_options=opts, name=f"{method}-{time.time()}", **extra
            )
            h = r.history
            row = dict(
                run=tag,
                options=opts,
                epochs=args.epochs,
                noise_rate=args.noise_rate,
                lr=args.lr,
                last_acc=h[-1]["test_acc"],
                best_acc=max(x["test_acc"] for x in h),
                label_precision=h[-1].get("label_precision"),
                label_recall=h[-1].get("label_recall"),
                cpu_s_per_epoch=sum(x["epoch_cpu_s"] for x in h) / len(h),
            )
            f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
