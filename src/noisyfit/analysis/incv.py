"""INCV (Chen, Liao, Chen, Zhang, ICML 2019): the noisy cross-validation theory and the
iterative selection of clean samples.

Symbols (the paper's): K classes, T the noise transition (``T[i, j] = P(ỹ = j | y = i)``),
M the confusion matrix of a network trained on one noisy half and tested on the other
(``M[i, j] = P(prediction = j | y = i)``), ε the noise rate, S the selected set, C the
candidate set, ε̂ the estimated noise rate, ρ the removal ratio.

Theory (section 3.1 of ``spec/methods.md``). With M ≈ T, balanced classes (prior π_i = 1/K)
and labels flipped independently of the prediction given the true class:

* test accuracy w.r.t. the noisy labels  A  = Σ_i π_i Σ_j T_ij²,
* label precision of "prediction = given label"  LP = Σ_i π_i T_ii² / A,
* label recall of the same selection  LR = Σ_i π_i T_ii² / Σ_i π_i T_ii.

These hold for any T (symmetric: A = (1 − ε)² + ε²/(K − 1); pair: A = (1 − ε)² + ε²; both
LR = 1 − ε). :func:`predicted_from_confusion` gives the same quantities for a measured M
(A = Σ_i π_i Σ_j M_ij T_ij, ...) — the exact expectation when the network is anything other
than a copy of T, which separates "M differs from T" from "the formulas are wrong".

The selection loop (:func:`incv_select`, ``INCV.py``) is written against two callables, so it
can be tested without a network and reused by the ``incv`` method and ``noisyfit clean``:

* ``train_fn(train_mask, val_mask, keep_best) -> model``: train a network from the *same*
  initial weights on the samples of ``train_mask`` (N,) bool; with ``keep_best`` return the
  epoch with the best accuracy w.r.t. the given labels on ``val_mask`` (the original's
  ``ModelCheckpoint(monitor='val_acc', save_best_only=True)``), else the last epoch;
* ``predict_fn(model, mask) -> (n, K)`` probabilities of the samples of ``mask``, in index
  order.

:func:`noisyfit.methods.incv.make_cv_trainer` builds both from a method Context (the
engine's ``ctx.train_model`` and ``ctx.predict``). Everything here is array-in/array-out: no
network is trained in this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import RunError
from ..noise import realized_transition
from .noise_rate import agreement_of, rate_from_agreement

# --------------------------------------------------------------------------------------------
# theory


def _prior(t: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    k = len(t)
    return np.full(k, 1.0 / k) if prior is None else np.asarray(prior, dtype=float) / np.sum(prior)


def theory_accuracy(t: np.ndarray, prior: np.ndarray | None = None) -> float:
    """A = Σ_i π_i Σ_j T_ij²: held-out accuracy w.r.t. the noisy labels when M = T.

    With the uniform prior this is :func:`noisyfit.analysis.noise_rate.agreement_of`.
    """
    t = np.asarray(t, dtype=float)
    if prior is None:
        return agreement_of(t)
    return float(_prior(t, prior) @ (t**2).sum(1))


def theory_precision(t: np.ndarray, prior: np.ndarray | None = None) -> float:
    """LP = Σ_i π_i T_ii² / Σ_i π_i Σ_j T_ij² (select a sample iff prediction = given label)."""
    t = np.asarray(t, dtype=float)
    p = _prior(t, prior)
    return float(p @ np.diag(t) ** 2 / theory_accuracy(t, p))


def theory_recall(t: np.ndarray, prior: np.ndarray | None = None) -> float:
    """LR = Σ_i π_i T_ii² / Σ_i π_i T_ii (the clean samples the same selection keeps)."""
    t = np.asarray(t, dtype=float)
    p = _prior(t, prior)
    d = np.diag(t)
    den = float(p @ d)
    return float(p @ d**2 / den) if den > 0 else float("nan")


def theory(t: np.ndarray, prior: np.ndarray | None = None) -> dict[str, float]:
    """{"test_acc", "label_precision", "label_recall"} from T (M = T)."""
    return {
        "test_acc": theory_accuracy(t, prior),
        "label_precision": theory_precision(t, prior),
        "label_recall": theory_recall(t, prior),
    }


def predicted_from_confusion(
    m: np.ndarray, t: np.ndarray, prior: np.ndarray | None = None
) -> dict[str, float]:
    """The same three quantities for a measured confusion M (rows: true class) and noise T.

    A = Σ_i π_i Σ_j M_ij T_ij; LP = Σ_i π_i M_ii T_ii / A; LR = Σ_i π_i M_ii T_ii / Σ_i π_i T_ii.
    Equal to :func:`theory` when M = T.
    """
    m, t = np.asarray(m, dtype=float), np.asarray(t, dtype=float)
    p = _prior(t, prior)
    a = float(p @ (m * t).sum(1))
    hit = float(p @ (np.diag(m) * np.diag(t)))
    return {
        "test_acc": a,
        "label_precision": hit / a if a > 0 else float("nan"),
        "label_recall": hit / float(p @ np.diag(t)) if np.diag(t).any() else float("nan"),
    }


def confusion(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Row-normalised (K, K) confusion: M[i, j] = fraction of true class i predicted as j."""
    c = np.bincount(np.asarray(true) * k + np.asarray(pred), minlength=k * k).reshape(k, k)
    rows = c.sum(1, keepdims=True)
    return np.divide(c, rows, out=np.zeros((k, k)), where=rows > 0)


def measured(
    true: np.ndarray | None, given: np.ndarray, pred: np.ndarray, k: int
) -> dict[str, Any]:
    """Test accuracy w.r.t. the given labels, and (with ``true``) LP, LR and M of the
    "prediction = given label" selection on a held-out set."""
    agree = np.asarray(pred) == np.asarray(given)
    out: dict[str, Any] = {"test_acc": float(agree.mean()), "n": int(len(agree))}
    if true is not None:
        clean = np.asarray(true) == np.asarray(given)
        out["label_precision"] = float((agree & clean).sum() / max(agree.sum(), 1))
        out["label_recall"] = float((agree & clean).sum() / max(clean.sum(), 1))
        out["confusion"] = confusion(true, pred, k)
        out["prior"] = np.bincount(true, minlength=k) / len(true)
    return out


# --------------------------------------------------------------------------------------------
# the INCV selection loop


@dataclass
class IncvResult:
    """What :func:`incv_select` returns. Masks are (N,) bool tensors on the labels' device.

    Attributes:
        select: S, the selected (presumed clean) samples.
        candidate: C, samples neither selected nor removed (the original's ``candidate``).
        removed: samples marked as large-loss (removed from C only for symmetric noise).
        eps_hat: ε̂, the estimated noise rate (from the first model's agreement).
        agreement: the first model's held-out agreement |S2| / |C2|.
        rho: ρ = min(2, ε̂/(1 − ε̂)), the removal ratio.
        iterations: one dict per iteration (sizes, keep_best, and with the truth LP/LR of S).
        oos_probs: (N, K) out-of-sample probabilities from the first iteration (each sample
            predicted by the model trained on the other half), for comparisons (cleanlab).
    """

    select: torch.Tensor
    candidate: torch.Tensor
    removed: torch.Tensor
    eps_hat: float
    agreement: float
    rho: float
    iterations: list[dict[str, Any]] = field(default_factory=list)
    oos_probs: torch.Tensor | None = None


def removal_ratio(eps_hat: float) -> float:
    """ρ = min(2, ε̂/(1 − ε̂)) (INCV.py's ``discard_ratio``)."""
    return 2.0 if eps_hat >= 1 else min(2.0, eps_hat / (1.0 - eps_hat))


def removal_count(rho: float, n_agree: int) -> int:
    """⌊ρ·|S_k|⌋, the number of largest-loss samples to remove from a half.

    The original slices ``argsort(loss)[-int(ρ·|S_k|):]``; when the count rounds to 0 that
    is ``[-0:]``, the *whole* half. Here 0 means 0 (the guard).
    """
    return max(0, int(rho * n_agree))


def largest(values: torch.Tensor, count: int) -> torch.Tensor:
    """(n,) bool mask of the ``count`` largest entries (none when count ≤ 0)."""
    mask = torch.zeros_like(values, dtype=torch.bool)
    count = min(int(count), len(values))
    if count > 0:
        mask[torch.topk(values, count).indices] = True
    return mask


def save_best_until(eps_hat: float, symmetric: bool) -> int:
    """``iter_save_best``: the last iteration that uses the best-validation checkpoint
    (1 for asymmetric noise or ε̂ > 0.6, 2 for ε̂ > 0.3, else 4)."""
    if not symmetric or eps_hat > 0.6:
        return 1
    if eps_hat > 0.3:
        return 2
    return 4


def incv_select(
    labels: torch.Tensor,
    num_classes: int,
    train_fn: Callable[[torch.Tensor, torch.Tensor, bool], Any],
    predict_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    *,
    iterations: int = 4,
    symmetric: bool = True,
    eps: float | None = None,
    keep_best: bool = True,
    seed: int = 0,
    true_labels: torch.Tensor | None = None,
    log: Callable[[str], None] | None = print,
    saved_state: dict[str, Any] | None = None,
    save_state: Callable[[dict[str, Any]], None] | None = None,
) -> IncvResult:
    """Iterative noisy cross-validation (``INCV.py``): select S, keep candidates C.

    Per iteration: split C randomly into halves C1, C2; train on S ∪ C1 (validating on C2),
    select the samples of C2 whose given label is the top-1 prediction (S2) and mark the
    ⌊ρ·|S2|⌋ largest-loss samples of C2; swap roles for C1; S ← S ∪ S1 ∪ S2,
    C ← C ∖ (S1 ∪ S2), and for symmetric noise also C ← C ∖ marked. In the first iteration ε̂
    is the smallest ε on a 0.001 grid with (1 − ε)² + ε²/(K − 1) ≤ |S2|/|C2| (the symmetric
    formula for every noise type, as the original), unless ``eps`` gives it.

    Args:
        labels: (N,) int64 given labels (on the device of the masks).
        num_classes: K.
        train_fn, predict_fn: see the module docstring.
        iterations: INCV_iter (4).
        symmetric: noise assumed symmetric (removal of large-loss samples; checkpoint rule).
        eps: a known noise rate instead of the estimate (None: estimate, as the paper).
        keep_best: apply the best-checkpoint rule (False: always the last epoch).
        seed: seed of the random halves.
        true_labels: (N,) truth, only to log LP/LR per iteration (never used to select).
        log: where progress lines go (None: silent).
        saved_state: a state ``save_state`` received before: the selection continues after
            its last iteration (a run stopped during the selection loses at most one).
        save_state: called after each iteration with the state (masks, ε̂, the split
            generator, the RNG, the log; CPU tensors), e.g. to write it atomically
            (``noisyfit.engine.checkpoint.state_store``).

    Returns:
        An :class:`IncvResult`.
    """
    dev = labels.device
    n = len(labels)
    select = torch.zeros(n, dtype=torch.bool, device=dev)
    candidate = torch.ones(n, dtype=torch.bool, device=dev)
    removed = torch.zeros(n, dtype=torch.bool, device=dev)
    gen = torch.Generator().manual_seed(int(seed))
    eps_hat = eps
    agreement = float("nan")
    rho = removal_ratio(eps) if eps is not None else float("nan")
    best = keep_best
    history: list[dict[str, Any]] = []
    oos = None
    clean = None if true_labels is None else (true_labels.to(dev) == labels)
    first = 1
    if saved_state is not None:
        st = saved_state
        if st.get("n") != n or st.get("iterations") != iterations:
            raise RunError(
                f"INCV's saved selection is for {st.get('n')} samples and "
                f"{st.get('iterations')} iterations, not {n} and {iterations}; delete its "
                "file (incv_stage1.pt) to select again"
            )
        select, candidate, removed = (st[k].to(dev) for k in ("select", "candidate", "removed"))
        oos = None if st["oos"] is None else st["oos"].to(dev)
        gen.set_state(st["gen"])
        torch.set_rng_state(st["rng"])
        eps_hat, agreement, rho, best = st["eps_hat"], st["agreement"], st["rho"], st["best"]
        history = list(st["history"])
        first = int(st["epoch"]) + 1
        if log:
            log(f"INCV: resuming the selection after iteration {first - 1}")
    for it in range(first, iterations + 1):
        cand_idx = torch.nonzero(candidate).flatten()
        if len(cand_idx) < 2:
            if log:
                log(f"INCV iteration {it}: fewer than 2 candidates left; stopping")
            break
        perm = cand_idx[torch.randperm(len(cand_idx), generator=gen).to(dev)]
        half = len(perm) // 2
        halves = []
        for part in (perm[:half], perm[half:]):
            m = torch.zeros(n, dtype=torch.bool, device=dev)
            m[part] = True
            halves.append(m)
        c1, c2 = halves
        new_select = torch.zeros_like(select)
        marked = torch.zeros_like(select)
        for k, (train_half, test_half) in enumerate(((c1, c2), (c2, c1))):
            model = train_fn(select | train_half, test_half, best)
            probs = predict_fn(model, test_half).float()
            idx = torch.nonzero(test_half).flatten()
            y = labels[idx]
            agree = probs.argmax(1) == y
            if it == 1:
                if oos is None:
                    oos = torch.zeros(n, num_classes, device=dev)
                oos[idx] = probs.to(dev)
                if k == 0:
                    agreement = float(agree.float().mean())
                    if eps_hat is None:
                        eps_hat = rate_from_agreement(agreement, num_classes, "symmetric")
                        rho = removal_ratio(eps_hat)
                    if log:
                        log(
                            f"INCV: held-out agreement {agreement:.4f} → estimated noise rate "
                            f"ε̂ = {eps_hat:.3f}, removal ratio ρ = {rho:.3f}"
                        )
            ce = cross_entropy_of(probs, y)
            n_agree = int(agree.sum())
            new_select[idx[agree]] = True
            marked[idx[largest(ce, removal_count(rho, n_agree))]] = True
        select |= new_select
        candidate &= ~new_select
        removed |= marked & ~select
        if symmetric:
            candidate &= ~marked
        rec: dict[str, Any] = {
            "iteration": it,
            "keep_best": best,
            "selected": int(select.sum()),
            "candidates": int(candidate.sum()),
            "removed": int(removed.sum()),
        }
        if clean is not None:
            s = int(select.sum())
            rec["label_precision"] = float((select & clean).sum() / s) if s else None
            rec["label_recall"] = float((select & clean).sum() / max(int(clean.sum()), 1))
            r = int(removed.sum())
            rec["removed_noisy_frac"] = float((removed & ~clean).sum() / r) if r else None
        history.append(rec)
        if log:
            extra = (
                f", LP {rec['label_precision']:.4f}, LR {rec['label_recall']:.4f}"
                if clean is not None and rec["label_precision"] is not None
                else ""
            )
            log(
                f"INCV iteration {it}/{iterations}: |S| = {rec['selected']}, "
                f"|C| = {rec['candidates']}, removed {rec['removed']}{extra}"
            )
        if eps_hat is not None and it == save_best_until(eps_hat, symmetric):
            best = False
        if save_state is not None:
            save_state(
                {
                    "epoch": it,  # the last finished iteration (named as checkpoints are)
                    "models": {},
                    "n": n,
                    "iterations": iterations,
                    "select": select.cpu(),
                    "candidate": candidate.cpu(),
                    "removed": removed.cpu(),
                    "oos": None if oos is None else oos.cpu(),
                    "gen": gen.get_state(),
                    "rng": torch.get_rng_state(),
                    "eps_hat": eps_hat,
                    "agreement": agreement,
                    "rho": rho,
                    "best": best,
                    "history": history,
                }
            )
    removed &= ~select
    return IncvResult(
        select,
        candidate,
        removed,
        float(eps_hat if eps_hat is not None else 0),
        agreement,
        rho,
        history,
        oos,
    )


# --------------------------------------------------------------------------------------------
# Verify_Theory: one noisy 2-fold check, from its predictions


def theory_check(
    true: np.ndarray, given: np.ndarray, pred: np.ndarray, nominal_t: np.ndarray, k: int
) -> dict[str, Any]:
    """Measured vs theoretical quantities of one noisy 2-fold check (Verify_Theory).

    Args:
        true, given, pred: (n,) true labels, given (noisy) labels and predictions of the
            held-out half (predicted by a network trained on the other half).
        nominal_t: (K, K) the nominal noise transition T.  k: K.

    Returns:
        ``measured`` test accuracy w.r.t. the noisy labels, LP, LR; the ``theory`` from the
        nominal T and from the realized T, the prediction from the measured M
        (:func:`predicted_from_confusion`), M, T, the realized T and max |M − T|.
    """
    meas = measured(true, given, pred, k)
    t_nom = np.asarray(nominal_t, dtype=float)
    t_real = realized_transition(true, given, k)
    prior = meas["prior"]
    return {
        "held_out": int(len(given)),
        "measured": {key: meas[key] for key in ("test_acc", "label_precision", "label_recall")},
        "theory": theory(t_nom),
        "theory_realized_T": theory(t_real, prior),
        "from_measured_M": predicted_from_confusion(meas["confusion"], t_real, prior),
        "M": meas["confusion"].tolist(),
        "T": t_nom.tolist(),
        "T_realized": t_real.tolist(),
        "M_minus_T_max_abs": float(np.abs(meas["confusion"] - t_nom).max()),
    }


def cross_entropy_of(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(n,) −log(p_ỹ + 1e-8), INCV's per-sample loss from probabilities."""
    return F.nll_loss(torch.log(probs + 1e-8), labels, reduction="none")
