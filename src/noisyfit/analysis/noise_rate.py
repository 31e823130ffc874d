"""Estimating the noise rate τ from the data (INCV's rule), and the theory it inverts.

Chen et al. (ICML 2019) show that a network trained on one noisy half of the data and tested on
the other has a confusion matrix (w.r.t. the truth) close to the noise transition T. Its
accuracy w.r.t. the *noisy* labels is then A = (1/K)·Σ_ij T_ij² (balanced classes). Measuring
A by 2-fold cross-validation and inverting A(ε) through the noise family gives ε̂.

INCV's code inverts the *symmetric* formula (1 − ε)² + ε²/(K − 1) for every noise type, on a
0.001 grid, taking the smallest ε with A(ε) ≤ the measured agreement. ``rate_from_agreement``
does the same for any noise family (``kind``), defaulting to INCV's symmetric choice.
The estimate itself (two networks trained on the halves) is the engine's
:func:`noisyfit.engine.subset.estimate_noise_rate`.
"""

from __future__ import annotations

import numpy as np

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
