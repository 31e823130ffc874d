"""Benchmark: F-correction's estimate T̂ and its accuracy against standard training, on
Fashion-MNIST with symmetric noise 0.4, under the noisy-validation protocol.

Protocol: the INCV-table setting of ``benchmarks/incv_training.py`` (the MLP, a fixed
class-stratified ``--train-subset`` of 10 000 training images, all 10 000 clean test images,
``--epochs`` 20, Adam 1e-3 ×0.1 at 40/60/80 %, weight decay 1e-4, batch 128, one thread), a
10 % noisy validation split (``val_ratio 0.1``, stratified on the given labels: the model is
selected at the epoch of the best accuracy on it, ``selected``) — the official
``validation_split=0.1``. Methods: ``standard``; ``f-correction`` as now (stage-1 network: the
epoch of the lowest noisy-validation cross-entropy, as the official ``ModelCheckpoint``);
``f-correction`` with ``stage1=last`` (the behaviour before: T̂ from the last epoch).

Reported per run: selected / last / oracle (max over epochs of test accuracy) clean test
accuracy, the diagonal of T̂ (min, mean, max; the true diagonal is 0.6), the realized noise.

``--setting demo``: the optimization of ``noisyfit demo`` (SGD 0.02 Nesterov, per-image
standardization, 40 epochs), where the MLP memorizes the noisy labels.
``--setting cnn``: ``cnn-small`` with ``noisyfit train``'s optimization (SGD 0.1, ×0.2 at
50/75 %, 20 epochs); with ``--train-subset 0`` (all 60 000 images) its stage-1 network is
strong enough for clean anchors.

Output: ``docs/benchmarks/f_correction_<setting>.md`` and ``.csv``, and every finished run as
one line of ``docs/benchmarks/data/f_correction_<setting>.jsonl``: a benchmark stopped half-way
resumes from there (runs of another setup are not reused), and re-running a finished command
re-renders the table without training.

    python benchmarks/f_correction_check.py                  # 2 seeds, ≈ 4 min CPU, 1 thread
    python benchmarks/f_correction_check.py --setting demo   # ≈ 8 min CPU
    python benchmarks/f_correction_check.py --setting cnn --train-subset 0 --seeds 0 1 2 3 4 5 6 7 \
        --jobs 2 --variants standard f-correction 'f-correction (true T given)'  # 4 h CPU
    python benchmarks/f_correction_check.py --quick      # smoke (3 000 images, 4 epochs)
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

import bench_common as C
import numpy as np
import torch

import noisyfit
from noisyfit.commands.demo import DEMO_CONFIG
from noisyfit.config import TrainConfig
from noisyfit.noise import transition_matrix

ROOT = Path(__file__).resolve().parents[1]
#: The TrainConfig fields a setting fixes.
OPTIMIZATION = (
    "model",
    "epochs",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "lr_schedule",
    "lr_milestones",
    "lr_decay",
    "normalize",
)
#: Optimization settings: the INCV table's (benchmarks/incv_training.py, 20 epochs), the demo's
#: (the MLP memorizes the noisy labels within the run) and ``noisyfit train``'s defaults on
#: cnn-small, the last two copied from where they are defined.
SETTINGS = {
    "incv": dict(
        model="mlp",
        epochs=20,
        optimizer="adam",
        lr=1e-3,
        momentum=0.9,
        weight_decay=1e-4,
        lr_schedule="step",
        lr_milestones=(0.4, 0.6, 0.8),
        lr_decay=0.1,
    ),
    "demo": {k: DEMO_CONFIG[k] for k in OPTIMIZATION},
    "cnn": {  # SGD 0.1, ×0.2 at 50/75 %
        **{k: getattr(TrainConfig(), k) for k in OPTIMIZATION},
        "model": "cnn-small",
        "epochs": 20,
    },
}
VARIANTS = (
    ("standard", "standard", {}),
    ("f-correction", "f-correction", {}),
    ("f-correction (stage1=last, before)", "f-correction", {"stage1": "last"}),
    # a shorter first run (its own step schedule decays within 10 epochs)
    ("f-correction (stage 1: 10 epochs)", "f-correction", {"estimate_epochs": "10"}),
    # the nominal T given (t_file): what the method reaches when the estimate is exact
    ("f-correction (true T given)", "f-correction", {"t_file": "NOMINAL"}),
)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--setting",
        choices=sorted(SETTINGS),
        default="incv",
        help="incv: Adam 1e-3 (the INCV table); demo: SGD 0.02 Nesterov (noisyfit demo's, "
        "where the MLP memorizes the noisy labels)",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: the setting's")
    p.add_argument("--train-subset", type=int, default=10000, help="0: all 60 000")
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--rate", type=float, default=0.4)
    p.add_argument("--val-ratio", type=float, default=0.1)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (1 thread each)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="a subset of the variants by label (default: all)",
    )
    a = p.parse_args(argv)
    a.cmd = C.command("f_correction_check.py", argv)
    a.epochs = a.epochs or SETTINGS[a.setting]["epochs"]
    a.train_subset = a.train_subset or None
    if a.quick:
        a.epochs, a.train_subset, a.test_subset, a.seeds = 4, 3000, 2000, [0]
    return a


def run_one(label, method, options, seed, a, runs: Path) -> dict:
    if options.get("t_file") == "NOMINAL":
        t_path = runs / f"nominal_symmetric{a.rate:g}.npy"
        np.save(t_path, transition_matrix("symmetric", 10, a.rate))
        options = {**options, "t_file": str(t_path)}
    cfg = TrainConfig(
        dataset="fashion-mnist",
        data_dir=a.data_dir,
        train_subset=a.train_subset,
        test_subset=a.test_subset,
        noise="symmetric",
        noise_rate=a.rate,
        noise_seed=seed,
        val_ratio=a.val_ratio,
        method=method,
        method_options=options,
        **{**SETTINGS[a.setting], "epochs": a.epochs},
        seed=seed,
        device="cpu",
        out=str(runs),
        name=f"{method}-{'-'.join(Path(v).stem for v in options.values()) or 'default'}-s{seed}",
        progress=False,
        checkpoint=False,
    )
    c0 = time.process_time()
    r = noisyfit.train(cfg, report=False)
    s = r.summary
    row = {
        "variant": label,
        "seed": seed,
        "setup": setup(a),
        "selected_acc": s["selected_test_acc"],
        "selected_epoch": s["selected_epoch"],
        "last_acc": s["last_test_acc"],
        "oracle_acc": s["best_test_acc"],
        "realized_noise": s["realized_noise_rate"],
        "cpu_s": time.process_time() - c0,
    }
    t_file = r.run_dir / "t_hat.npy"
    if t_file.is_file():
        d = np.diag(np.load(t_file))
        row.update(
            t_diag_min=float(d.min()),
            t_diag_mean=float(d.mean()),
            t_diag_max=float(d.max()),
            # classes whose T̂_ii lies within 0.1 of the true 1 - rate
            t_diag_within_0_1=int((np.abs(d - (1 - a.rate)) <= 0.1).sum()),
            t_diag=[round(float(x), 4) for x in d],
        )
        row["stage1_epoch"] = r.history[-1].get("t_hat_stage1_epoch")
    print(row, flush=True)
    return row


def _ms(xs, scale=100.0) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    m = scale * statistics.mean(xs)
    sd = scale * statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.2f} ± {sd:.2f}"


def setup(a) -> str:
    """What a finished run's row must match to be reused on resume."""
    return (
        f"{a.setting} epochs={a.epochs} train_subset={a.train_subset} "
        f"test_subset={a.test_subset} rate={a.rate:g} val_ratio={a.val_ratio:g}"
    )


def run_cell(job) -> dict:
    (label, method, options, seed), a, runs = job
    return run_one(label, method, options, seed, a, runs)


def _per_seed(rows, key) -> str:
    """The values of ``key`` seed by seed, or – where no run has one."""
    xs = [r.get(key) for r in rows]
    return "–" if all(x is None for x in xs) else ", ".join(str(x) for x in xs)


def main(argv=None) -> int:
    a = parse(argv)
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    name = f"f_correction_{a.setting}" + ("_quick" if a.quick else "")
    # every finished run is appended here at once, so an interrupted benchmark resumes
    # (delete the file to start over)
    done_file = a.out / "data" / f"{name}.jsonl"
    done_file.parent.mkdir(exist_ok=True)
    done = (
        [json.loads(x) for x in done_file.read_text().splitlines()] if done_file.is_file() else []
    )
    done = [r for r in done if r.get("setup") == setup(a)]
    have = {(r["variant"], r["seed"]) for r in done}
    cells = [
        (label, method, options, seed)
        for seed in a.seeds
        for label, method, options in VARIANTS
        if (not a.variants or label in a.variants) and (label, seed) not in have
    ]
    rows = [
        r for r in done if r["seed"] in a.seeds and (not a.variants or r["variant"] in a.variants)
    ]
    with (
        tempfile.TemporaryDirectory() as tmp,
        C.results(run_cell, [(c, a, Path(tmp)) for c in cells], a.jobs) as results,
    ):  # one run per worker process
        for row in results:
            rows.append(row)
            with open(done_file, "a") as f:
                f.write(json.dumps(row) + "\n")
    rows.sort(key=lambda r: ([v[0] for v in VARIANTS].index(r["variant"]), r["seed"]))
    keys = sorted(
        {k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99
    )
    with open(a.out / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"# F-correction's estimate on Fashion-MNIST, symmetric {a.rate:g}",
        "",
        f"`{a.cmd}`: "
        f"{SETTINGS[a.setting]}; {a.train_subset or 60000} training images (a "
        f"{a.val_ratio:.0%} noisy validation split held out of them), "
        f"{a.test_subset or 10000} clean test images, {a.epochs} epochs, "
        f"seeds {a.seeds}; mean ± std over seeds (%). selected = clean test accuracy "
        "at the epoch of the best noisy-validation accuracy; oracle = max over epochs of test "
        "accuracy (not a result). T̂ diagonal: min / mean / max over classes (true: "
        f"{1 - a.rate:g}); CPU s: process time of one thread per run.",
        "",
        "| variant | selected acc | last acc | oracle: max test acc | T̂ diag min | T̂ diag "
        "mean | T̂ diag max | classes with T̂_ii within 0.1 | stage-1 epoch | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, _, _ in VARIANTS:
        rs = [r for r in rows if r["variant"] == label]
        if not rs:
            continue
        lines.append(
            f"| {label} | {_ms([r['selected_acc'] for r in rs])} | "
            f"{_ms([r['last_acc'] for r in rs])} | {_ms([r['oracle_acc'] for r in rs])} | "
            f"{_ms([r.get('t_diag_min') for r in rs], 1)} | "
            f"{_ms([r.get('t_diag_mean') for r in rs], 1)} | "
            f"{_ms([r.get('t_diag_max') for r in rs], 1)} | "
            f"{_per_seed(rs, 't_diag_within_0_1')} | {_per_seed(rs, 'stage1_epoch')} | "
            f"{statistics.mean(r['cpu_s'] for r in rs):.0f} |"
        )
    # each variant against standard on the same seed (same noisy labels, split and init)
    base = {r["seed"]: r["selected_acc"] for r in rows if r["variant"] == "standard"}
    paired = []
    for label, _, _ in VARIANTS[1:]:
        d = [
            r["selected_acc"] - base[r["seed"]]
            for r in rows
            if r["variant"] == label and r["seed"] in base
        ]
        if d:
            paired.append(
                f"| {label} | {_ms(d)} | {sum(x > 0 for x in d)} of {len(d)} | "
                f"{', '.join(f'{100 * x:+.2f}' for x in d)} |"
            )
    if paired:
        lines += [
            "",
            "Selected accuracy minus standard's on the same seed (points):",
            "",
            "| variant | mean ± std | seeds ahead | per seed |",
            "|---|---|---|---|",
            *paired,
        ]
    (a.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
