"""Estimating the noise rate τ from the data (INCV's rule), and the theory it inverts.

Chen et al. (ICML 2019) show that a network trained on one noisy half of the data and tested on
the other has a confusion matrix (w.r.t. the truth) close to the noise transition T. Its
accuracy w.r.t. the *noisy* labels is then A = (1/K)·Σ_ij T_ij² (balanced classes). Measuring
A by 2-fold cross-validation and inverting A(ε) through the noise family gives ε̂.

INCV's code inverts the *symmetric* formula (1 − ε)² + ε²/(K − 1) for every noise type, on a
0.001 grid, taking the smallest ε with A(ε) ≤ the measured agreement. ``rate_from_agreement``
does the same for any noise family (``kind``), defaulting to INCV's symmetric choice.
"""

from __future__ import annotations

import numpy as np
import torch

from ..noise import transition_matrix


def agreement_of(t: np.ndarray) -> float:
    """Expected held-out accuracy w.r.t. noisy labels when M ≈ T: (1/K)·Σ_ij T_ij²."""
    return float((t**2).sum() / len(t))


def rate_from_agreement(
    agreement: float, num_classes: int, kind: str = "symmetric", grid: float = 0.001, **kw
) -> float:
    """Smallest ε on a grid in [0, 1) whose theoretical agreement A(ε) ≤ ``agreement``.

    A(ε) decreases on the relevant branch (ε below the minimum of A), as INCV assumes.
    Returns the grid's last value below 1 if no ε qualifies.
    """
    eps = np.arange(0.0, 1.0, grid)
    for e in eps:
        if agreement_of(transition_matrix(kind, num_classes, float(e), **kw)) <= agreement:
            return float(round(e, 6))
    return float(eps[-1])


@torch.no_grad()
def _predict(model: torch.nn.Module, loader) -> torch.Tensor:
    model.eval()
    out = [model(b.x).argmax(1) for b in loader.epoch(0)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def estimate_noise_rate(
    ctx, *, kind: str = "symmetric", epochs: int | None = None, seed: int = 0
) -> dict:
    """τ̂ by 2-fold noisy cross-validation (INCV's first iteration), using ``ctx.train_model``.

    Splits the training set in two seeded halves, trains a fresh network on each half (the
    run's optimizer and schedule, ``epochs`` epochs), predicts the other half, and inverts the
    agreement with the given labels through the ``kind`` family.

    Returns:
        {"tau": ε̂, "agreement": measured agreement, "kind": kind, "epochs": epochs}
    """
    n = ctx.num_samples
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    half = torch.zeros(n, dtype=torch.bool)
    half[perm[: n // 2]] = True
    agree = 0
    for k, mask in enumerate((half, ~half)):
        net = ctx.train_model(mask, epochs=epochs, describe=f"τ-estimate fold {k + 1}/2 ")
        other = ctx.loader.subset((~mask).to(ctx.device))
        other.shuffle = False
        pred = _predict(net, other)
        agree += int((pred == ctx.loader.labels[other.indices]).sum())
    a = agree / n
    return {
        "tau": rate_from_agreement(a, ctx.num_classes, kind),
        "agreement": a,
        "kind": kind,
        "epochs": epochs or ctx.epochs,
    }
