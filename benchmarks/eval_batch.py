"""Evaluation speed by eval batch size on the CPU, against a training step per image.

For each CPU-sized model on Fashion-MNIST-shaped inputs (1×28×28, 10 classes): images/s of
``evaluate``'s forward pass (``torch.no_grad``, eval mode) at eval batches 64 … 1000, and of a
training step (forward + backward + SGD step, batch 128). CPU time of this 1-thread process
(``time.process_time``), best of ``--rounds`` interleaved rounds, so other load on the machine
hits every cell alike.

    OMP_NUM_THREADS=1 python benchmarks/eval_batch.py   # writes docs/benchmarks/eval_batch.md
    OMP_NUM_THREADS=1 python benchmarks/eval_batch.py --quick
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from noisyfit.models import build_model

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (64, 128, 256, 512, 1000)
MODELS = ("mlp", "cnn-tiny", "cnn-small")


def eval_rate(model, x: torch.Tensor, batch: int) -> float:
    """Images/s (CPU time) of no-grad eval forwards over ``x`` in batches of ``batch``."""
    model.eval()
    with torch.no_grad():
        model(x[:batch])  # warm-up
        c0 = time.process_time()
        for k in range(0, len(x), batch):
            model(x[k : k + batch])
        return len(x) / (time.process_time() - c0)


def train_forward_rate(model, x: torch.Tensor, batch: int = 128) -> float:
    """Images/s (CPU time) of the training forward alone (train mode, autograd on)."""
    model.train()
    model(x[:batch])
    c0 = time.process_time()
    for k in range(0, len(x), batch):
        model(x[k : k + batch])
    return len(x) / (time.process_time() - c0)


def train_rate(model, x: torch.Tensor, y: torch.Tensor, batch: int = 128) -> float:
    """Images/s (CPU time) of training steps (forward, backward, SGD step)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    c0 = None
    for k in range(-batch, len(x), batch):  # the first batch is a warm-up
        xb, yb = x[max(k, 0) : max(k, 0) + batch], y[max(k, 0) : max(k, 0) + batch]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k < 0:
            c0 = time.process_time()
    return len(x) / (time.process_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs/benchmarks/eval_batch.md"))
    a = ap.parse_args()
    if a.quick:
        a.images, a.rounds = 512, 1
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(a.images, 1, 28, 28)
    y = torch.randint(0, 10, (a.images,))
    nets = {m: build_model(m, 10, (1, 28, 28)) for m in a.models}
    best: dict[tuple[str, object], float] = {}
    for _ in range(a.rounds):
        for m, net in nets.items():
            for b in BATCHES:
                best[m, b] = max(best.get((m, b), 0.0), eval_rate(net, x, b))
            best[m, "fwd"] = max(best.get((m, "fwd"), 0.0), train_forward_rate(net, x))
            best[m, "train"] = max(best.get((m, "train"), 0.0), train_rate(net, x, y))
    lines = [
        "# Evaluation speed by eval batch (CPU, 1 thread)",
        "",
        f"Made by `benchmarks/eval_batch.py` ({a.images} images 1×28×28, best of {a.rounds} "
        f"interleaved rounds, CPU time of one 1-thread process; torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}; the machine was shared, CPU time is "
        "what the process itself spent).",
        "",
        "Images/s of the no-grad evaluation forward by eval batch, and for comparison of the "
        "training forward (train mode, autograd on, batch 128) and of a whole training step "
        "(forward + backward + SGD, batch 128); **bold**: the fastest eval batch.",
        "",
        "| model | "
        + " | ".join(f"eval {b}" for b in BATCHES)
        + " | train fwd (128) | train step (128) |",
        "|---|" + "---:|" * (len(BATCHES) + 2),
    ]
    for m in nets:
        top = max(BATCHES, key=lambda b: best[m, b])
        cells = [f"**{best[m, b]:,.0f}**" if b == top else f"{best[m, b]:,.0f}" for b in BATCHES]
        lines.append(
            f"| {m} | "
            + " | ".join(cells)
            + f" | {best[m, 'fwd']:,.0f} | {best[m, 'train']:,.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not a.quick:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
