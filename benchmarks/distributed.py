"""Images/s of 1 vs W processes (DDP) and the per-step cost of the per-sample state sync.

Each cell trains a method for ``--epochs`` epochs on the synthetic image set through
``engine.loop.fit`` in W processes joined by gloo (CPU) or NCCL (``--device cuda``, one GPU
per process), the way ``torchrun -m noisyfit train`` runs it; the first epoch is a warm-up and
dropped, images/s is the mean of the later epochs over the global batch. "sync ms/step" is the
wall time of the engine's fused all-gather of per-sample state and verdicts
(``Replicas.sync``) per step, averaged over the timed epochs (none with W = 1).

    OMP_NUM_THREADS=1 python benchmarks/distributed.py            # docs/benchmarks/distributed.md
    python benchmarks/distributed.py --device cuda --world 1 2 4 --n 50000 --model resnet18
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from noisyfit import distributed as dist  # noqa: E402

#: method options that put each method in its active phase from the second epoch
ACTIVE = {
    "standard": ({}, None),
    "coteaching": ({"t_k": "1"}, 0.3),
    "selfie": ({"warm_up": "1", "q": "3", "restart": "0"}, 0.3),
    "active-bias": ({"warm_up": "1"}, None),
}


def _cell(rank: int, a: dict, out: str) -> None:
    from noisyfit.api import build_run, prepare_data
    from noisyfit.config import TrainConfig
    from noisyfit.data.synthetic import synthetic
    from noisyfit.engine import ddp
    from noisyfit.engine.loop import fit

    dev = torch.device(f"cuda:{rank}") if a["device"] == "cuda" else torch.device("cpu")
    ds = synthetic(n_train=a["n"], n_test=256, num_classes=10, image_size=16, channels=3)
    options, tau = ACTIVE[a["method"]]
    epochs = a["epochs"]
    if a["method"] == "selfie":
        options = {**options, "round_epochs": str(epochs)}
    cfg = TrainConfig(
        method=a["method"],
        model=a["model"],
        noise="none",
        epochs=epochs,
        batch_size=a["batch"],
        tau=tau,
        method_options=options,
        augment=False,
        progress=False,
        checkpoint=False,
        device=str(dev),
    )
    torch.manual_seed(0)
    run = build_run(cfg, data=prepare_data(cfg, ds), device=dev)  # the one run builder
    method, train = run.method, run.train
    times: list[float] = []
    original = ddp.Replicas.sync

    def timed(self, batch):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        original(self, batch)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)

    ddp.Replicas.sync = timed
    res = fit(method, train, None, cfg)
    steps = len(train)
    timed_epochs = res.history[1:]
    if rank == 0:
        result = {
            "images_per_s": sum(h["images_per_s"] for h in timed_epochs) / len(timed_epochs),
            "sync_ms": 1e3 * sum(times[steps:]) / max(1, len(times[steps:])) if times else None,
        }
        Path(out).write_text(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--world", type=int, nargs="+", default=[1, 2])
    p.add_argument("--methods", nargs="+", default=["standard", "selfie"])
    p.add_argument("--model", default="cnn-tiny")
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="markdown file (cpu default: docs/benchmarks/distributed.md; cuda: print only)",
    )
    a = p.parse_args()
    if a.epochs < 2:  # the first epoch (start-up, compilation) is not timed
        p.error(f"--epochs {a.epochs}: at least 2 (the first epoch is not timed)")
    rows = []
    for method in a.methods:
        for w in a.world:
            args = dict(vars(a), method=method, out=None)
            with tempfile.TemporaryDirectory() as tmp:
                f = os.path.join(tmp, "r.json")
                backend = "nccl" if a.device == "cuda" else "gloo"
                dist.run_ranks(_cell, w, args, f, timeout_s=1800, backend=backend)
                r = json.loads(Path(f).read_text())
            rows.append((method, w, r["images_per_s"], r["sync_ms"]))
            print(f"{method:12s} W={w}: {r['images_per_s']:8.0f} img/s  sync {r['sync_ms']} ms")
    base = {m: ips for m, w, ips, _ in rows if w == 1}
    lines = [
        "| method | processes | images/s | × 1 process | state sync ms/step |",
        "|---|---|---|---|---|",
    ]
    for m, w, ips, ms in rows:
        rel = f"{ips / base[m]:.2f}" if m in base else "–"
        sync = f"{ms:.2f}" if ms is not None else "–"
        lines.append(f"| {m} | {w} | {ips:.0f} | {rel} | {sync} |")
    table = "\n".join(lines)
    print(table)
    cpus = os.cpu_count()
    head = (
        f"`python benchmarks/distributed.py {' '.join(sys.argv[1:])}` — {a.device}, "
        f"{a.model}, synthetic 3×16×16, N = {a.n}, global batch {a.batch}, {a.epochs} epochs "
        f"(first dropped); {platform.processor() or platform.machine()}, {cpus} CPU cores, "
        f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}."
    )
    out = a.out or (ROOT / "docs/benchmarks/distributed.md" if a.device == "cpu" else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        prev = out.read_text() if out.is_file() else ""
        marker = "<!-- table -->"
        text = prev.split(marker)[0] if marker in prev else _INTRO
        out.write_text(f"{text}{marker}\n\n{head}\n\n{table}\n")


_INTRO = """# Distributed training: 1 vs 2 processes

Written by `benchmarks/distributed.py` (the table below is regenerated in place).

"""

if __name__ == "__main__":
    main()
