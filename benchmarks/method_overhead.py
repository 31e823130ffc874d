"""Training time per epoch of each method relative to ``standard``, robust to a shared machine.

Every method runs through the same ``fit()`` on the same data and model, in its *active* phase
(warm-ups set to 0, Co-teaching's schedule already at 1 − τ), for a few epochs; methods are
interleaved round by round, and the *minimum* epoch time over all rounds is kept — the time
an epoch takes when nothing else slows it down. Other load on the machine can only make an
epoch slower, never faster, so the minimum over many epochs estimates the uncontended cost.

    python benchmarks/method_overhead.py                       # SELFIE family, MLP
    python benchmarks/method_overhead.py --methods standard l2r ieg --probe-per-class 10

Writes docs/benchmarks/method_overhead.md (and prints the table).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import noisyfit
from noisyfit.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

#: options that put each method straight into its active phase
ACTIVE = {
    "selfie": {"warm_up": "1", "restart": "0", "q": "2"},
    "active-bias": {"warm_up": "0"},
    "coteaching": {"t_k": "1"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--methods", nargs="+", default=["standard", "active-bias", "coteaching", "selfie"]
    )
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--train-subset", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per method per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--probe-per-class", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "method_overhead.md")
    a = ap.parse_args()
    if a.epochs < 2:  # SELFIE's warm-up epoch needs a SELFIE epoch after it
        ap.error(f"--epochs {a.epochs}: at least 2 (SELFIE warms up for 1 epoch)")
    torch.set_num_threads(a.threads)
    best: dict[str, float] = {}
    runs = tempfile.mkdtemp(prefix="noisyfit-overhead-")  # a fresh folder: reruns don't clash
    for r in range(a.rounds):
        for m in a.methods:
            cfg = TrainConfig(
                train_subset=a.train_subset,
                test_subset=1000,
                model=a.model,
                method=m,
                method_options=ACTIVE.get(m, {}),
                noise="pair",
                noise_rate=0.4,
                epochs=a.epochs,
                lr=0.02,
                nesterov=True,
                progress=False,
                checkpoint=False,
                out=runs,
                name=f"{m}-r{r}",
                device="cpu",
                probe_per_class=a.probe_per_class,
            )
            res = noisyfit.train(cfg, report=False)
            # skip the first epoch of SELFIE (its warm-up); others are active from epoch 1
            times = [h["epoch_time_s"] for h in res.history[1 if m == "selfie" else 0 :]]
            best[m] = min(best.get(m, float("inf")), *times)
            print(f"round {r + 1} {m:12s} min epoch {min(times):.3f} s", flush=True)
    base = best["standard"]
    rows = [f"| {m} | {best[m]:.3f} | {best[m] / base:.2f} |" for m in a.methods]
    text = "\n".join(
        [
            "# Training time per epoch relative to standard",
            "",
            f"Fashion-MNIST subset of {a.train_subset}, model `{a.model}`, batch 128, "
            f"{a.threads} torch thread(s), CPU; each method in its active phase (options "
            f"{ACTIVE}); {a.rounds} interleaved rounds × {a.epochs} epochs; the minimum epoch "
            "time (evaluation excluded) is kept.",
            "",
            "Command: `python benchmarks/method_overhead.py`",
            "",
            "| method | min time per epoch (s) | × standard |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)


if __name__ == "__main__":
    main()
