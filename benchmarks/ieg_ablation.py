"""Which part of IEG costs accuracy on a small CNN? One cell of benchmarks/ieg_family.py
(Fashion-MNIST, cnn-small, 12 500-image stratified subset less 10 probe images per class and a
noisy validation split, uniform 0.8, 10 epochs) with IEG's options changed one at a time.

    python benchmarks/ieg_ablation.py [--seeds 0 1] [--jobs 2] [--val-ratio 0.05]
        [--out docs/benchmarks/ieg_ablation.md]

Each variant is ``ieg`` with the benchmark's settings (AutoAugment, 500-step ramp-up of p and
k) plus the options in its row; ``standard`` and ``l2r`` are the same cell's baselines.
Accuracies are reported as in ieg_family.py: *selected* (epoch of the best noisy-validation
accuracy), *last* and the *oracle* (max over epochs of test accuracy, not a result).
≈ 6 min per IEG variant and seed with one torch thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_common as C  # noqa: E402
import ieg_family as B  # noqa: E402

#: (row name, method, IEG option overrides)
VARIANTS = [
    ("standard", "standard", {}),
    ("l2r", "l2r", {}),
    ("ieg, p 5, k 20 (IEG's defaults)", "ieg", {}),
    ("ieg, RandAugment strong view", "ieg", {"aug_type": "randaug"}),
    ("ieg, no policy or Cutout in the second view", "ieg", {"aug_type": "default"}),
    ("ieg, p 2, k 5", "ieg", {"ce_factor": "2", "consistency_factor": "5"}),
    ("ieg, k 0 (no consistency term)", "ieg", {"consistency_factor": "0"}),
    (  # the rules before issue 12's fidelity fixes (IEG's code: the defaults above)
        "ieg, before the fidelity fixes (guess detached, shuffled probe, strong view from raw)",
        "ieg",
        {"detach_guess": "true", "probe_order": "shuffled", "strong_from": "raw"},
    ),
    # ... and one rule at a time, and with k 0 (the setting that works on a small CNN)
    ("ieg, guess detached (before)", "ieg", {"detach_guess": "true"}),
    ("ieg, shuffled probe (before)", "ieg", {"probe_order": "shuffled"}),
    ("ieg, strong view from the raw image (before)", "ieg", {"strong_from": "raw"}),
    (
        "ieg, k 0, before the fidelity fixes",
        "ieg",
        {
            "consistency_factor": "0",
            "detach_guess": "true",
            "probe_order": "shuffled",
            "strong_from": "raw",
        },
    ),
]


def run(job):
    """One (variant, seed) run in this process, one torch thread."""
    (name, method, opts), seed, a = job
    torch.set_num_threads(1)
    r = B.run_one(method, "uniform", 0.8, seed, a, ieg_options=opts)
    print(
        f"{name}, seed {seed}: selected {100 * r['selected']:.2f} % "
        f"(epoch {r['selected_epoch']}), last {100 * r['acc']:.2f} %",
        flush=True,
    )
    return name, seed, r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--jobs", type=int, default=2)
    B.add_cell_args(p)  # ieg_family's cell: sizes, ramp-up, AutoAugment, split
    p.set_defaults(device="cpu")
    p.add_argument(
        "--variants",
        nargs="+",
        type=int,
        default=None,
        help="row numbers (0-based) of VARIANTS to run; default all",
    )
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks/ieg_ablation.md"))
    a = p.parse_args(argv)
    variants = [VARIANTS[i] for i in a.variants] if a.variants else VARIANTS
    jobs = [(v, s, a) for v in variants for s in a.seeds]
    t0 = time.perf_counter()
    with C.results(run, jobs, a.jobs) as done:
        done = list(done)
    minutes = (time.perf_counter() - t0) / 60
    rows: dict[str, list[dict]] = {}
    for name, _, r in done:
        rows.setdefault(name, []).append(r)
    first = next(iter(rows.values()))
    n_train = first[0]["n_train"]
    lines = [
        "# IEG ablation on a small CNN",
        "",
        f"`{C.command('ieg_ablation.py', argv)}` — Fashion-MNIST, cnn-small, uniform 0.8 (realized "
        f"{100 * np.mean([r['realized'] for r in first]):.1f} %), {n_train} noisy training "
        f"images, a {a.val_ratio:.0%} noisy validation split held out of the noisy subset, 10 "
        "clean probe images per class, "
        f"{a.epochs} epochs of batch 100, cosine restarts, seeds {a.seeds} "
        f"({a.jobs} process(es) of one torch thread, {minutes:.0f} min). Clean test accuracy (%), "
        "mean ± std over seeds (EMA weights for l2r and ieg): *selected* at the epoch of the "
        "best noisy-validation accuracy, *last* after the last epoch, *oracle* the max over "
        "epochs of test accuracy (the test set used for selection: not a result). LP / LR / "
        "weight precision of the last epoch, mean over seeds.",
        "",
        "| variant | selected | last | oracle | LP | LR | weight precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, _, _ in variants:
        rs = rows[name]
        accs = [B.fmt([r[k] for r in rs]) for k in ("selected", "acc", "oracle")]
        diag = [
            f"{100 * np.mean([r[k] for r in rs]):.1f}" if rs[0].get(k) is not None else "–"
            for k in ("lp", "lr", "wp")
        ]
        lines.append(f"| {name} | " + " | ".join(accs + diag) + " |")
    C.publish(a.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
