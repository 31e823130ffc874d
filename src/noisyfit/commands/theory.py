"""``noisyfit theory``: INCV's noisy cross-validation theory check (``Verify_Theory.py``).

Splits the noisy training set into two seeded halves, trains a network on one (the run's
model, optimizer, schedule and epochs), predicts the other and reports, beside the theory
computed from the noise transition T (any T; :mod:`noisyfit.analysis.incv`):

* test accuracy w.r.t. the noisy labels, label precision and label recall of the selection
  "prediction = given label";
* the confusion matrix M w.r.t. the true labels, beside T.

Three reference columns: the theory from the nominal T (the paper's curves), from the T
realized on the held-out half, and the expectation from the *measured* M (equal to the
measurement up to sampling error whenever the noise is independent of the input given the
class — so a gap between "theory" and "measured" is M ≠ T, not a wrong formula).

``--sweep`` runs the check over ``--rates`` for each of ``--kinds`` and draws the paper's
figures: ``theory_curves.png`` (measured vs theory test accuracy, LP, LR) and
``confusion_<kind><rate>.png`` (M beside T) for ``--heatmap-rates``. Every run writes
``theory.json`` (single) or ``sweep.json`` + ``sweep.md`` (sweep) into the output folder.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis.incv import theory, theory_check
from ..api import build_run, seed_everything
from ..cli import TrainFlags, command, parse_args
from ..config import Floats, Names, TrainConfig
from ..engine.run import write_json
from ..errors import ConfigError
from ..noise import transition_matrix

QUANTITIES = (
    ("test_acc", "test accuracy (noisy labels)"),
    ("label_precision", "label precision"),
    ("label_recall", "label recall"),
)


def format_single(r: dict[str, Any]) -> str:
    """A plain-text report of one check."""
    lines = [
        f"{r['noise']} noise, rate {r['noise_rate']:g}: trained on {r['train_size']}, "
        f"held out {r['held_out']}",
        "",
        f"  {'':30s}{'measured':>10s}{'theory T':>10s}{'real. T':>10s}{'from M':>10s}",
    ]
    for key, label in QUANTITIES:
        lines.append(
            f"  {label:30s}{r['measured'][key]:>10.4f}{r['theory'][key]:>10.4f}"
            f"{r['theory_realized_T'][key]:>10.4f}{r['from_measured_M'][key]:>10.4f}"
        )
    k = r["num_classes"]
    lines += ["", "  confusion M w.r.t. the truth (rows: true class) | nominal T"]
    m, t = np.asarray(r["M"]), np.asarray(r["T"])
    for i in range(k):
        lines.append(
            "  " + " ".join(f"{v:.2f}" for v in m[i]) + "  |  " + " ".join(f"{v:.2f}" for v in t[i])
        )
    lines.append(f"  max |M − T| = {r['M_minus_T_max_abs']:.3f}")
    return "\n".join(lines)


def sweep_table(results: list[dict[str, Any]]) -> str:
    """A Markdown table: measured vs theory (nominal T) per setting, with the deviation."""
    head = (
        "| noise | rate | test acc | theory | LP | theory | LR | theory | "
        "max abs dev. | max abs M−T |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in results:
        m, t = r["measured"], r["theory"]
        dev = max(abs(m[k] - t[k]) for k, _ in QUANTITIES)
        lines.append(
            f"| {r['noise']} | {r['noise_rate']:g} | {m['test_acc']:.3f} | {t['test_acc']:.3f} "
            f"| {m['label_precision']:.3f} | {t['label_precision']:.3f} "
            f"| {m['label_recall']:.3f} | {t['label_recall']:.3f} | {dev:.3f} "
            f"| {r['M_minus_T_max_abs']:.3f} |"
        )
    return "\n".join(lines)


def plot_curves(results: list[dict[str, Any]], path: Path, num_classes: int) -> None:
    """Measured (markers) vs theory (lines) test accuracy, LP and LR against the noise rate,
    one row per noise kind (the paper's LPLR figure)."""
    import matplotlib  # lazy: pyplot costs ~0.4 s and needs the Agg backend chosen first

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after matplotlib.use("Agg")

    kinds = list(dict.fromkeys(r["noise"] for r in results))
    fig, axes = plt.subplots(len(kinds), 3, figsize=(12, 3.4 * len(kinds)), squeeze=False)
    grid = np.linspace(0, 1, 101)
    for row, kind in zip(axes, kinds):
        th = [theory(transition_matrix(kind, num_classes, float(e))) for e in grid]
        pts = sorted((r for r in results if r["noise"] == kind), key=lambda r: r["noise_rate"])
        for ax, (key, label) in zip(row, QUANTITIES):
            ax.plot(grid, [t[key] for t in th], "-", color="C0", label="theory (M = T)")
            ax.plot(
                [r["noise_rate"] for r in pts],
                [r["measured"][key] for r in pts],
                "o",
                color="C3",
                label="measured",
            )
            ax.plot(
                [r["noise_rate"] for r in pts],
                [r["from_measured_M"][key] for r in pts],
                "x",
                color="C2",
                label="from measured M",
            )
            ax.set_title(f"{kind}: {label}")
            ax.set_xlabel("noise rate ε")
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
        row[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(r: dict[str, Any], path: Path) -> None:
    """M (measured, w.r.t. the truth) beside T (nominal) as heatmaps."""
    import matplotlib  # lazy: pyplot costs ~0.4 s and needs the Agg backend chosen first

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after matplotlib.use("Agg")

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True)
    for ax, (mat, title) in zip(
        axes, ((r["M"], "confusion M (measured)"), (r["T"], "noise transition T"))
    ):
        im = ax.imshow(np.asarray(mat), vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"{title}\n{r['noise']} {r['noise_rate']:g}")
        ax.set_xlabel("predicted / noisy label")
        ax.set_ylabel("true label")
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def noisy_cross_validation(cfg: TrainConfig, *, split_seed: int = 0, data=None) -> dict[str, Any]:
    """Train on one seeded noisy half of the training set, predict the other (Verify_Theory).

    The run is built by :func:`noisyfit.api.build_run` (``data``: a prepared dataset instead
    of ``cfg``'s); the comparison is :func:`noisyfit.analysis.incv.theory_check`. Returns the
    measured test accuracy w.r.t. the noisy labels, LP, LR and M (w.r.t. the truth, on the
    held-out half), the theory from the nominal T and from the realized T, and the prediction
    from the measured M.
    """
    if data is not None:
        seed_everything(cfg.seed, cfg.deterministic)
    run = build_run(cfg, data=data, method=False)
    ctx, data = run.ctx, run.data
    if data.true is None:
        raise ConfigError(f"{cfg.dataset} has no true labels: the theory check needs them")
    n, k = ctx.num_samples, ctx.num_classes
    g = torch.Generator().manual_seed(int(split_seed))
    perm = torch.randperm(n, generator=g)
    train = torch.zeros(n, dtype=torch.bool)
    train[perm[: n // 2]] = True
    train = train.to(ctx.device)
    net = ctx.train_model(train, describe="theory ")
    pred = ctx.predict(net, ~train).argmax(1).cpu().numpy()
    held = torch.nonzero(~train).flatten().cpu().numpy()
    check = theory_check(
        data.true[held], data.noisy.labels[held], pred, data.noisy.manifest.nominal_T, k
    )
    return {
        "noise": cfg.noise,
        "noise_rate": cfg.noise_rate,
        "num_classes": k,
        "train_size": int(train.sum()),
        **check,
    }


def run_sweep(
    cfg: TrainConfig,
    rates: Sequence[float],
    kinds: Sequence[str],
    out: Path,
    *,
    heatmap_rates: Sequence[float] = (),
    split_seed: int = 0,
    log=print,
) -> list[dict[str, Any]]:
    """The check for every (kind, rate); writes sweep.json, sweep.md and the figures."""
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for kind in kinds:
        for rate in rates:
            t0 = time.perf_counter()
            r = noisy_cross_validation(
                cfg.replace(noise=kind, noise_rate=float(rate)), split_seed=split_seed
            )
            r["wall_time_s"] = time.perf_counter() - t0
            results.append(r)
            if log:
                m, t = r["measured"], r["theory"]
                log(
                    f"{kind} {rate:g}: acc {m['test_acc']:.3f} (theory {t['test_acc']:.3f}), "
                    f"LP {m['label_precision']:.3f} ({t['label_precision']:.3f}), "
                    f"LR {m['label_recall']:.3f} ({t['label_recall']:.3f})"
                )
            if any(abs(rate - h) < 1e-9 for h in heatmap_rates):
                plot_confusion(r, out / f"confusion_{kind}{rate:g}.png")
    write_json(out / "sweep.json", results)
    (out / "sweep.md").write_text(sweep_table(results) + "\n")
    plot_curves(results, out / "theory_curves.png", results[0]["num_classes"])
    return results


@dataclass
class TheoryArgs:
    """INCV's theory check: train on one noisy half of the training set, predict the other;
    measured vs theoretical test accuracy, label precision/recall and M vs T (--sweep: over
    --rates for each of --kinds, figures in the output folder)."""

    train: TrainFlags = field(default_factory=TrainConfig)
    sweep: bool = False
    """Sweep the noise rates --rates for each noise kind of --kinds."""
    rates: Floats = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    """Noise rates of the sweep (``0,0.1,0.2`` or ``0 0.1 0.2``)."""
    kinds: Names = ("symmetric", "pair")
    """Noise kinds of the sweep."""
    heatmap_rates: Floats = (0.4, 0.8)
    """Rates whose M vs T heatmaps the sweep draws."""
    split_seed: int = 0
    """Seed of the split into two noisy halves."""
    config: Path | None = None
    """A YAML file of TrainConfig keys: the defaults, which the flags given override."""


@command(
    "theory",
    help="INCV's noisy cross-validation theory check: train on one noisy half, "
    "test on the other; measured vs theoretical accuracy, LP, LR, M vs T (--sweep)",
)
def cmd_theory(argv: Sequence[str]) -> int:
    """noisyfit theory [--sweep] [--rates ...] [--kinds ...] [TrainConfig flags]"""
    a = parse_args(TheoryArgs, argv, prog="noisyfit theory")
    cfg = a.train
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if a.sweep:
        out = Path(cfg.out) / (cfg.name or f"theory-sweep-{cfg.dataset}-{stamp}")
        results = run_sweep(
            cfg,
            list(a.rates),
            list(a.kinds),
            out,
            heatmap_rates=list(a.heatmap_rates),
            split_seed=a.split_seed,
        )
        print("\n" + sweep_table(results))
        print(
            f"\nwrote {out / 'sweep.json'}, {out / 'sweep.md'} and the figures "
            f"({out / 'theory_curves.png'})"
        )
        return 0
    out = Path(cfg.out) / (
        cfg.name or f"theory-{cfg.dataset}-{cfg.noise}{cfg.noise_rate:g}-{stamp}"
    )
    r = noisy_cross_validation(cfg, split_seed=a.split_seed)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "theory.json", r)
    plot_confusion(r, out / "confusion.png")
    print("\n" + format_single(r))
    print(f"\nwrote {out / 'theory.json'} and {out / 'confusion.png'}")
    return 0
