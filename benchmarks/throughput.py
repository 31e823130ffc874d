"""Throughput of ``fit()`` with ``standard`` against a bare hand-written PyTorch loop.

Same model (cnn-small), data (Fashion-MNIST, uint8 on the device, 40% symmetric noise), batch
size (128), optimizer (SGD momentum 0.9, weight decay 5e-4) and device. The bare loop does only
what any loop must: index a batch, convert and normalize it, forward, cross-entropy, backward,
step. ``fit()`` adds the schedule, the selection diagnostics, the per-sample verdicts and the
non-finite check. The two are timed alternately (A B A B …) so machine drift hits both; the
ratio of the medians is reported.

    python benchmarks/throughput.py            # 3 rounds of 2 epochs on 20,000 images
    python benchmarks/throughput.py --quick    # a smoke version

Writes docs/benchmarks/throughput.md (and prints the table).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from noisyfit.api import PreparedData, build_run, prepare_data
from noisyfit.config import TrainConfig
from noisyfit.engine.loop import fit
from noisyfit.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def bare_loop(data: PreparedData, cfg: TrainConfig, epochs: int, seed: int) -> float:
    """Images/s of a minimal loop over the same device-resident data."""
    ds = data.dataset
    torch.manual_seed(seed)
    model = build_model(cfg.model, ds.num_classes, ds.input_shape)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    x = torch.as_tensor(ds.x)
    y = torch.as_tensor(data.noisy.labels)
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.std).view(1, -1, 1, 1)
    n, b = len(x), cfg.batch_size
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n)
        for k in range(0, n, b):
            idx = perm[k : k + b]
            xb = (x[idx].float() / 255 - mean) / std
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epochs * n / (time.perf_counter() - t0)


def fit_loop(data: PreparedData, cfg: TrainConfig, epochs: int, seed: int) -> float:
    """Images/s of noisyfit's fit() with the standard method (no evaluation, no files)."""
    torch.manual_seed(seed)
    cfg = cfg.replace(epochs=epochs, seed=seed, method="standard", augment=False, device="cpu")
    run = build_run(cfg, data=data)  # the one run builder (no evaluation, no files here)
    t0 = time.perf_counter()
    fit(run.method, run.train, None, cfg, true_labels=run.true_labels)
    return epochs * len(data.dataset) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subset", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "throughput.md")
    a = ap.parse_args()
    if a.quick:
        a.subset, a.epochs, a.rounds = 4000, 1, 1
    cfg = TrainConfig(train_subset=a.subset, progress=False, checkpoint=False)
    data = prepare_data(cfg)
    bare_loop(data, cfg, 1, 0)  # warm-up (allocator, oneDNN kernels), not timed
    bare, ours = [], []
    for r in range(a.rounds):
        bare.append(bare_loop(data, cfg, a.epochs, r))
        ours.append(fit_loop(data, cfg, a.epochs, r))
        print(f"round {r + 1}: bare {bare[-1]:.0f} img/s, fit {ours[-1]:.0f} img/s")
    mb, mo = statistics.median(bare), statistics.median(ours)
    table = [
        "| loop | images/s (median of rounds) | all rounds |",
        "|---|---|---|",
        f"| bare PyTorch loop | {mb:.0f} | {', '.join(f'{v:.0f}' for v in bare)} |",
        f"| noisyfit fit() + standard | {mo:.0f} | {', '.join(f'{v:.0f}' for v in ours)} |",
        f"| **ratio fit / bare** | **{mo / mb:.3f}** | target ≥ 0.95 |",
    ]
    text = "\n".join(
        [
            "# Throughput: fit() vs a bare PyTorch loop",
            "",
            f"Fashion-MNIST subset of {a.subset} images, cnn-small, batch {cfg.batch_size}, "
            f"SGD momentum 0.9, CPU ({torch.get_num_threads()} threads, "
            f"{platform.processor() or platform.machine()}), "
            f"torch {torch.__version__}; {a.rounds} rounds of {a.epochs} epochs each, alternating.",
            "",
            "Command: `python benchmarks/throughput.py" + (" --quick" if a.quick else "") + "`",
            "",
            *table,
            "",
        ]
    )
    print(text)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)


if __name__ == "__main__":
    main()
