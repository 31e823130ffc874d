"""Finding label errors as a product: ``noisyfit find-issues``, ``noisyfit.find_issues(...)``
and ``noisyfit.find_label_issues(labels=..., pred_probs=...)``.

Vocabulary (cleanlab's): N samples, K classes, ``labels`` the given labels, ``pred_probs``
(N, K) out-of-sample predicted probabilities, columns in class-index order.

**Two entry points, cleanlab's meaning kept.** ``find_label_issues(labels, pred_probs)`` is
cleanlab's ``cleanlab.filter.find_label_issues``: a boolean mask (or ranked indices with
``return_indices_ranked_by``) for probabilities computed elsewhere; it calls cleanlab when the
``noisyfit[cleanlab]`` extra is installed, else :func:`confident_learning_mask`, a
self-contained re-implementation of cleanlab's default filter (``prune_by_noise_rate``).
``find_issues(...)`` trains on a dataset and returns a :class:`LabelIssues`; for backward
compatibility ``find_label_issues(dataset=...)`` (no ``labels``/``pred_probs``) still runs it.

**Every row is examined.** For a user's data (``arrays``, ``imagefolder``, in-memory arrays)
the builder's test hold-out is switched off: every row of the user's ``x`` (every image of the
class folders, or of ``train/``) is a row of the result, in the user's order, with its row
index in ``x`` (``dataset_index``) or its path (``file``). With ``holdout`` > 0 a seeded
stratified share of the rows is held out: no network trains on them, and they are still scored
(by the mean of the fold networks) and reported, marked ``held_out``; their accuracy is the
"held-out accuracy on your labels". ``--train-subset`` and a probe set still take rows out
(the user asked for it); ``dataset_index`` then says which rows remain.

Methods (``method=``):

* ``cv`` (default): K-fold cross-validation (``folds`` = 3): a fresh network per fold is
  trained with plain cross-entropy on the other folds (``ctx.train_model``) and predicts its
  held-out fold, so every row of ``pred_probs`` is out-of-sample. Flags: confident learning
  on these ``pred_probs`` (cleanlab's filter, or the fallback).
* ``incv``: INCV's iterative noisy cross-validation (:func:`noisyfit.commands.clean.clean_incv`,
  options in ``method_options``); flagged = not selected as clean; ``pred_probs`` are the first
  iteration's 2-fold out-of-sample probabilities;
* any registered training method (``coteaching``, ``selfie``, ... — ``noisyfit list methods``):
  one run of the method on every row (a normal run folder, without a test split); flagged =
  the method's final verdict dropped or relabelled (suggested label: the one it trained on);
  ``pred_probs`` are the main network's probabilities on the training samples — not
  out-of-sample in the strict sense, recorded as such in ``issues_summary.json``.

``label_quality`` is the probability of the given label (cleanlab's self-confidence);
``suggested_label`` the top prediction (or the method's new label). The summary holds the
out-of-fold accuracy on the given labels and the estimated noise rate (off-diagonal share of
the calibrated confident joint); below :data:`MIN_OOF_ACCURACY` a warning says the flags cannot
be trusted and how to get a stronger model.

Writes into ``out``: ``label_issues.csv`` (index, given_label, suggested_label,
is_label_issue, label_quality — cleanlab's columns, ``index`` the row of ``pred_probs`` — then
dataset_index (the row in the user's array / the dataset's training split), file (image
folders), given_class, suggested_class, held_out (with a hold-out) and true_label where a truth
exists), ``pred_probs.npy`` (N, K) float32, ``given_labels.npy``, ``issues_summary.json``
(with ``class_names``). Where the truth exists (injected noise), the summary holds the error
precision/recall of the flagged set (share of flagged labels that are wrong; share of wrong
labels flagged) and LP/LR of the kept set.
"""

from __future__ import annotations

import csv
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed as dist
from .api import (
    build_run,
    prepare_data,
    resolve_device,
    seed_everything,
    split_objects,
    train,
)
from .cleaning import clean_incv
from .config import resolve_config
from .data.base import load_dataset
from .data.folder import holdout_split
from .engine.run import write_json
from .errors import ConfigError
from .methods.base import METHODS
from .report import read_samples

#: Methods that are not registered training methods.
BUILTIN = ("cv", "incv")

#: Below this out-of-fold accuracy on the given labels the flags are not to be trusted (a
#: heuristic: confident learning assumes the model is right on most rows; with 40% symmetric
#: noise even a perfect model scores 60% on the given labels, so the bar sits below that).
MIN_OOF_ACCURACY = 0.5

#: Datasets whose builders hold out a test split that find-issues switches off.
USER_DATASETS = ("arrays", "imagefolder")


class LowAccuracyWarning(UserWarning):
    """The out-of-fold accuracy is too low for the label-issue flags to be trusted."""


@dataclass
class LabelIssues:
    """What :func:`find_issues` returns. Arrays are over the N examined rows, in the user's
    order.

    Attributes:
        given_labels: (N,) int64.  suggested_labels: (N,) int64.
        is_label_issue: (N,) bool.  label_quality: (N,) float in [0, 1] (low = suspect).
        pred_probs: (N, K) float32, columns in class-index order.  true_labels: (N,) or None.
        summary: counts, method, timing, out-of-fold accuracy, estimated noise rate and (with
            truth) precision/recall.
        dataset_index: (N,) each row's index in the user's array (``arrays``, in-memory data),
            in the sorted list of images (``imagefolder``), or in the dataset's training split.
        out: the folder written to, or None.
        class_names: K names.  files: (N,) paths relative to the image folder, or None.
        held_out: (N,) bool, rows no network trained on (``holdout``), or None.
    """

    given_labels: np.ndarray
    suggested_labels: np.ndarray
    is_label_issue: np.ndarray
    label_quality: np.ndarray
    pred_probs: np.ndarray
    true_labels: np.ndarray | None
    summary: dict[str, Any]
    out: Path | None = None
    dataset_index: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    files: list[str] | None = None
    held_out: np.ndarray | None = None

    def ranked(self) -> np.ndarray:
        """Indices of the flagged samples, most suspect (lowest label quality) first."""
        idx = np.flatnonzero(self.is_label_issue)
        return idx[np.argsort(self.label_quality[idx], kind="stable")]

    def where(self, i: int) -> str:
        """Row ``i`` as the user knows it: its file, or its index in the user's array."""
        if self.files is not None:
            return self.files[i]
        return f"row {int(self.dataset_index[i]) if self.dataset_index is not None else i}"


# --------------------------------------------------------------------------------------------
# confident learning (cleanlab's filter, or the self-contained fallback)


def _round_preserving_sum(v: np.ndarray) -> np.ndarray:
    """Integers of ``v`` that sum to round(sum(v)): round, then move the largest remainders
    (cleanlab's ``round_preserving_sum``)."""
    floats = np.asarray(v, dtype=float)
    ints = floats.round()
    diff = int(np.round(floats.sum().round() - ints.sum()))
    if diff:
        inc = 1 if diff > 0 else -1
        # numpy's default sort, as cleanlab's call: ties then break alike on this machine
        order = np.argsort(floats - ints)[::-inc][: abs(diff)]
        ints[order] += inc
    return ints


def _floats(a) -> np.ndarray:
    """``a`` as a float array in its own precision (float32 stays float32, as cleanlab sees
    it: thresholds and margins then compare alike), other dtypes as float64."""
    a = np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a)
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def confident_joint(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """(K, K) calibrated confident joint C[given, true guess] (Northcutt et al. 2021, eq. 1-2).

    Per-class threshold t_j = mean p_j over the samples labelled j; a sample counts at
    (given, j) for the most probable class j with p_j ≥ t_j (none: not counted); the diagonal
    is at least 1; rows are then scaled to the label counts, the total to N, and rounded
    keeping row totals (cleanlab's ``compute_confident_joint(calibrate=True)``).
    """
    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = _floats(pred_probs)
    n, k = pred_probs.shape
    counts = np.bincount(labels, minlength=k)  # int64, as cleanlab's label counts
    thr = np.array([pred_probs[labels == j, j].mean() if counts[j] else np.inf for j in range(k)])
    conf = pred_probs >= thr - 1e-6
    n_conf = conf.sum(1)
    guess = np.where(n_conf > 1, pred_probs.argmax(1), conf.argmax(1))
    ok = n_conf > 0
    # counted as [guess, given] and transposed, the layout of cleanlab's confusion_matrix(...).T
    cj = np.zeros((k, k), dtype=np.int64)
    np.add.at(cj, (guess[ok], labels[ok]), 1)
    cj = cj.T
    np.fill_diagonal(cj, np.maximum(cj.diagonal(), 1))
    # the same operations, dtypes and memory layout as cleanlab's calibrate_confident_joint,
    # so that the sums agree to the last bit and ties (x.5) round alike
    cal = (cj.T / np.clip(cj.sum(axis=1), 1e-100, None) * counts).T
    cal = cal / np.clip(np.sum(cal), 1e-100, None) * counts.sum()
    return np.stack([_round_preserving_sum(r) for r in cal]).astype(np.int64)


def confident_learning_mask(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    *,
    min_examples_per_class: int = 1,
) -> np.ndarray:
    """(N,) bool: confident learning's "prune by noise rate" filter, self-contained.

    The fallback when cleanlab is not installed, written after cleanlab 2.x's
    ``filter.find_label_issues(filter_by="prune_by_noise_rate")`` (the library's default):
    with C the calibrated :func:`confident_joint`, for each given class k and other class j,
    flag the C[k, j] samples labelled k with the largest margin p_j − p_k (each class keeps at
    least ``min_examples_per_class``, its off-diagonal counts reduced evenly to make room);
    finally a sample whose given label is its top prediction is never flagged. The dtypes,
    memory layouts and sorts follow cleanlab's code, so the mask equals cleanlab 2.9's
    bit for bit (tests/test_own_data.py checks 40 varied cases).
    """
    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = _floats(pred_probs)
    k = pred_probs.shape[1]
    prune = confident_joint(labels, pred_probs).T.astype(float)  # [true guess, given]
    diag = prune.diagonal().copy()
    new_diag = np.maximum(diag, min_examples_per_class)
    per_col = np.maximum(np.count_nonzero(prune, axis=0) - 1.0, 1.0)
    prune = prune - (new_diag - diag) / per_col
    prune[prune < 0] = 0
    np.fill_diagonal(prune, new_diag)
    prune = prune.astype(int)
    mask = np.zeros(len(labels), dtype=bool)
    for c in range(k):
        rows = np.flatnonzero(labels == c)
        if len(rows) <= min_examples_per_class:
            continue
        p = pred_probs[rows]
        hit = np.zeros(len(rows), dtype=bool)
        for j in range(k):
            if j != c and prune[j, c] > 0:
                hit[np.argsort(-(p[:, j] - p[:, c]))[: prune[j, c]]] = True
        mask[rows] = hit
    boosted = pred_probs.copy()
    boosted[np.arange(len(labels)), labels] += 1e-6
    mask[boosted.argmax(1) == labels] = False
    return mask


def estimated_noise_rate(labels: np.ndarray, pred_probs: np.ndarray) -> float:
    """Share of wrong labels estimated by confident learning: the off-diagonal mass of the
    calibrated confident joint over N."""
    cj = confident_joint(labels, pred_probs)
    return float(1 - np.trace(cj) / max(cj.sum(), 1))


def _cleanlab():
    try:
        import cleanlab.filter as f  # optional dependency

        return f
    except ImportError:
        return None


def find_label_issues(*args: Any, **kwargs: Any):
    """cleanlab's ``find_label_issues(labels, pred_probs, ...)``: a boolean mask over the
    samples (True = label issue), or the flagged indices ranked with
    ``return_indices_ranked_by="self_confidence"`` (most suspect first).

    Calls ``cleanlab.filter.find_label_issues`` when cleanlab is installed
    (``pip install noisyfit[cleanlab]``; every keyword is passed on, ``n_jobs`` defaults to 1),
    else :func:`confident_learning_mask` (``filter_by="prune_by_noise_rate"`` only).

    Args:
        labels: (N,) int given labels.  pred_probs: (N, K) out-of-sample probabilities.

    Backward compatible: without ``labels``/``pred_probs`` (e.g. ``dataset="arrays",
    data_dir="mine.npz"``, or a TrainConfig) it runs :func:`find_issues` and returns a
    :class:`LabelIssues`.
    """
    if "labels" in kwargs or "pred_probs" in kwargs or (args and _array_like(args[0])):
        return label_issue_mask(*args, **kwargs)
    return find_issues(*args, **kwargs)


def _array_like(v: Any) -> bool:
    return (
        isinstance(v, (np.ndarray, list)) or hasattr(v, "__array__") and not hasattr(v, "to_dict")
    )


def label_issue_mask(
    labels,
    pred_probs,
    *,
    return_indices_ranked_by: str | None = None,
    filter_by: str = "prune_by_noise_rate",
    backend: str = "auto",
    **cleanlab_options: Any,
) -> np.ndarray:
    """The work of :func:`find_label_issues` for given probabilities. ``backend``: ``auto``
    (cleanlab if installed), ``cleanlab`` or ``fallback``."""
    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = _floats(pred_probs)
    if pred_probs.ndim != 2 or len(pred_probs) != len(labels):
        raise ConfigError(
            f"pred_probs must be (N, K) with N = len(labels) = {len(labels)}; got shape "
            f"{pred_probs.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= pred_probs.shape[1]):
        raise ConfigError(
            f"labels must lie in [0, {pred_probs.shape[1] - 1}] (pred_probs has "
            f"{pred_probs.shape[1]} columns); found {labels.min()}..{labels.max()}"
        )
    cl = _cleanlab() if backend in ("auto", "cleanlab") else None
    if backend == "cleanlab" and cl is None:
        raise ConfigError("backend='cleanlab' needs cleanlab: pip install 'noisyfit[cleanlab]'")
    if cl is not None:
        cleanlab_options.setdefault("n_jobs", 1)
        return cl.find_label_issues(
            labels,
            pred_probs,
            return_indices_ranked_by=return_indices_ranked_by,
            filter_by=filter_by,
            **cleanlab_options,
        )
    if filter_by != "prune_by_noise_rate" or cleanlab_options.keys() - {
        "n_jobs",
        "verbose",
        "min_examples_per_class",
    }:
        raise ConfigError(
            f"without cleanlab only filter_by='prune_by_noise_rate' and min_examples_per_class "
            f"are supported (got filter_by={filter_by!r}, {sorted(cleanlab_options)}); "
            "pip install 'noisyfit[cleanlab]' for the rest"
        )
    mask = confident_learning_mask(
        labels, pred_probs, min_examples_per_class=cleanlab_options.get("min_examples_per_class", 1)
    )
    if return_indices_ranked_by is None:
        return mask
    if return_indices_ranked_by != "self_confidence":
        raise ConfigError(
            f"without cleanlab only return_indices_ranked_by='self_confidence' is supported, "
            f"got {return_indices_ranked_by!r}"
        )
    idx = np.flatnonzero(mask)
    q = pred_probs[idx, labels[idx]]
    return idx[np.argsort(q, kind="stable")]


def flagger_name() -> str:
    """Which confident-learning filter :func:`find_label_issues` uses here."""
    cl = _cleanlab()
    if cl is None:
        return (
            "noisyfit's confident-learning fallback (prune_by_noise_rate; cleanlab not installed)"
        )
    import cleanlab  # optional dependency (installed: checked above)

    return f"cleanlab {cleanlab.__version__} filter.find_label_issues (prune_by_noise_rate)"


def flag_scores(
    given: np.ndarray,
    pred_probs: np.ndarray,
    flagged: np.ndarray | None = None,
    suggested: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """label_quality (self-confidence), suggested label (argmax unless given) and the flag
    (confident learning, :func:`find_label_issues`, unless given)."""
    q = pred_probs[np.arange(len(given)), given]
    sugg = pred_probs.argmax(1) if suggested is None else suggested
    flag = find_label_issues(labels=given, pred_probs=pred_probs) if flagged is None else flagged
    return {"label_quality": q, "suggested": sugg, "flag": np.asarray(flag, dtype=bool)}


def selection_scores(
    given: np.ndarray, true: np.ndarray | None, flagged: np.ndarray
) -> dict[str, float | None]:
    """With truth: error precision/recall of the flagged set, LP/LR of the kept set."""
    if true is None:
        return {}
    wrong = given != true
    kept = ~flagged

    def ratio(a, b):
        return float(a) / float(b) if b else None

    return {
        "error_precision": ratio((flagged & wrong).sum(), flagged.sum()),
        "error_recall": ratio((flagged & wrong).sum(), wrong.sum()),
        "label_precision": ratio((kept & ~wrong).sum(), kept.sum()),
        "label_recall": ratio((kept & ~wrong).sum(), (~wrong).sum()),
        "realized_noise_rate": float(wrong.mean()),
    }


def quality_checks(given: np.ndarray, probs: np.ndarray, *, out_of_sample: bool) -> dict:
    """Out-of-fold accuracy on the given labels, the estimated noise rate and, when the
    accuracy is below :data:`MIN_OOF_ACCURACY`, a warning with the fix."""
    acc = float((probs.argmax(1) == given).mean()) if len(given) else None
    rate = estimated_noise_rate(given, probs) if len(given) else None
    d: dict[str, Any] = {
        "oof_accuracy" if out_of_sample else "fit_accuracy": acc,
        "estimated_noise_rate": rate,
    }
    if out_of_sample and acc is not None and (acc < MIN_OOF_ACCURACY or (rate or 0) > 0.5):
        d["warning"] = (
            f"out-of-fold accuracy on your labels is {acc:.1%} (estimated noise rate "
            f"{rate:.1%}; want accuracy ≥ {MIN_OOF_ACCURACY:.0%} and noise ≤ 50%): the model is "
            "too weak for its flags to be trusted; train longer (--epochs), use a "
            "bigger model (--model) or more folds (--folds 5); the ranking by label_quality "
            "is still useful"
        )
    return d


def write_issues(out: Path, res: LabelIssues) -> None:
    out.mkdir(parents=True, exist_ok=True)
    names = res.class_names

    def cname(c: int) -> str:
        return names[c] if c < len(names) else str(c)

    with open(out / "label_issues.csv", "w", newline="") as f:
        w = csv.writer(f)
        head = ["index", "given_label", "suggested_label", "is_label_issue", "label_quality"]
        head += ["dataset_index"] if res.dataset_index is not None else []
        head += ["file"] if res.files is not None else []
        head += ["given_class", "suggested_class"] if names else []
        head += ["held_out"] if res.held_out is not None else []
        w.writerow(head + (["true_label"] if res.true_labels is not None else []))
        for i in range(len(res.given_labels)):
            g, sg = int(res.given_labels[i]), int(res.suggested_labels[i])
            row = [i, g, sg, bool(res.is_label_issue[i]), f"{res.label_quality[i]:.6g}"]
            if res.dataset_index is not None:
                row.append(int(res.dataset_index[i]))
            if res.files is not None:
                row.append(res.files[i])
            if names:
                row += [cname(g), cname(sg)]
            if res.held_out is not None:
                row.append(bool(res.held_out[i]))
            if res.true_labels is not None:
                row.append(int(res.true_labels[i]))
            w.writerow(row)
    np.save(out / "pred_probs.npy", res.pred_probs.astype(np.float32))
    np.save(out / "given_labels.npy", res.given_labels)
    write_json(out / "issues_summary.json", res.summary)


def cross_val_probs(
    ctx,
    folds: int,
    *,
    seed: int = 0,
    epochs: int | None = None,
    log=print,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """(N, K) out-of-sample probabilities by ``folds``-fold cross-validation on a Context.

    ``exclude``: (N,) bool rows no fold trains on (a hold-out); each is scored by the mean of
    the ``folds`` networks, so it too is out-of-sample.
    """
    n = ctx.num_samples
    if folds < 2:
        raise ConfigError(f"cross-validation needs folds ≥ 2, got {folds}")
    exclude = np.zeros(n, dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    cand = np.flatnonzero(~exclude)
    perm = cand[np.random.default_rng(seed).permutation(len(cand))]
    probs = np.zeros((n, ctx.num_classes), dtype=np.float32)
    ex = torch.as_tensor(exclude, device=ctx.device)
    for f, part in enumerate(np.array_split(perm, folds)):
        held = torch.zeros(n, dtype=torch.bool, device=ctx.device)
        held[torch.as_tensor(part, device=ctx.device)] = True
        model = ctx.train_model(~held & ~ex, epochs=epochs, describe=f"fold {f + 1}/{folds} ")
        probs[np.sort(part)] = ctx.predict(model, held).cpu().numpy()
        if exclude.any():
            probs[exclude] += ctx.predict(model, ex).cpu().numpy() / folds
        if log:
            log(
                f"fold {f + 1}/{folds}: trained on {int(n - len(part) - exclude.sum())}, "
                f"predicted {len(part)}"
                + (f" + {int(exclude.sum())} held out" if exclude.any() else "")
            )
    return probs


def _from_result(res) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict]:
    """(given, pred_probs, scores, samples) of a finished training run (a TrainResult)."""
    samples = read_samples(res.run_dir)
    given = samples["given"]
    ctx = res.method.ctx
    probs = ctx.predict(res.method.main_model).cpu().numpy().astype(np.float32)
    flagged = np.isin(samples["verdict"], ["dropped", "relabelled"])
    sugg = np.where(samples["verdict"] == "relabelled", samples["label"], probs.argmax(1))
    return given, probs, flag_scores(given, probs, flagged=flagged, suggested=sugg), samples


def _train_index(run_dir: Path | None) -> np.ndarray | None:
    """The run's ``train_index.npy`` (rows → dataset indices), if it wrote one."""
    f = Path(run_dir) / "train_index.npy" if run_dir is not None else None
    return np.load(f) if f is not None and f.is_file() else None


def issues_from_run(res, out: str | Path | None = None) -> LabelIssues:
    """The label issues of a finished :func:`noisyfit.train` run (its final verdicts and its
    main network's probabilities), written to ``out`` (default: the run folder)."""
    given, probs, sc, samples = _from_result(res)
    flag = np.asarray(sc["flag"], dtype=bool)
    info = {
        "method": res.summary["method"],
        "run_dir": str(res.run_dir),
        "num_samples": int(len(given)),
        "num_classes": int(probs.shape[1]),
        "num_issues": int(flag.sum()),
        "pred_probs": "the main network's probabilities on the training samples",
        **selection_scores(given, samples["true"], flag),
    }
    r = LabelIssues(
        given,
        np.asarray(sc["suggested"]),
        flag,
        np.asarray(sc["label_quality"], dtype=float),
        probs,
        samples["true"],
        info,
        dataset_index=_train_index(res.run_dir),
    )
    r.out = Path(out or res.run_dir)
    write_issues(r.out, r)
    return r


def load_all_rows(cfg, dataset=None):
    """The dataset with every row of the user's data in its training split: the
    ``arrays``/``imagefolder`` builders' test hold-out switched off (``test_fraction=0``)."""
    if dataset is not None:
        return dataset
    if cfg.dataset in USER_DATASETS:
        return load_dataset(cfg.dataset, cfg.data_dir, test_fraction=0.0)
    return load_dataset(cfg.dataset, cfg.data_dir)


def find_issues(
    config=None,
    /,
    *,
    method: str = "cv",
    folds: int = 3,
    holdout: float = 0.0,
    out: str | Path | None = None,
    log=print,
    weights: str | Path | None = None,
    **overrides: Any,
) -> LabelIssues:
    """Train with ``method`` and return (and write, with ``out``) the per-row label issues.

    Args:
        config: a TrainConfig, a YAML file, or None (defaults); ``overrides`` change fields,
            e.g. ``dataset="arrays", data_dir="mine.npz", noise="none"``. ``dataset`` may also
            be in-memory data (a torch Dataset, an (x, y) pair) and ``model`` a factory or an
            ``nn.Module`` (as :func:`noisyfit.train`).
        method: ``cv``, ``incv`` or any registered method name (see the module docstring).
        folds: K of ``cv``.
        holdout: ``cv`` only: share of rows (seeded, stratified) no network trains on; they are
            still scored and reported (``held_out``), and their accuracy is the held-out
            accuracy on your labels.
        out: folder for label_issues.csv, pred_probs.npy, issues_summary.json (None: nothing
            written; registered methods still write their run folder under ``config.out``).
        log: where progress lines go (None: silent). The low-accuracy warning is also raised
            as a :class:`LowAccuracyWarning`.

    Example::

        res = noisyfit.find_issues(dataset="arrays", data_dir="mine.npz", noise="none")
        res.ranked()[:20], res.pred_probs   # pred_probs go to cleanlab as they are
    """
    dataset_obj, model_obj, overrides = split_objects(overrides, weights)
    cfg = resolve_config(config, **overrides)
    if method not in BUILTIN and method not in METHODS:
        raise ConfigError(
            f"unknown method {method!r} for finding label issues; choose from "
            f"{', '.join([*BUILTIN, *METHODS.names()])}"
        )
    if holdout and method != "cv":
        raise ConfigError(f"--holdout applies to --method cv; {method} examines every row as is")
    if not 0 <= holdout < 1:
        raise ConfigError(f"--holdout must lie in [0, 1), got {holdout}")
    t0 = time.perf_counter()
    info: dict[str, Any] = {
        "method": method,
        "dataset": cfg.dataset,
        "data_dir": None if cfg.data_dir is None else str(Path(cfg.data_dir).resolve()),
        "model": cfg.model,
        "noise": cfg.noise,
        "nominal_noise_rate": None if cfg.noise == "none" else cfg.noise_rate,
    }
    # torchrun (W > 1): join the group; the folds train distributed (``ctx.train_model`` runs
    # the one loop), predictions are replicated, rank 0 alone writes ``out``
    dist.init(resolve_device(cfg.device))
    seed_everything(cfg.seed, cfg.deterministic)
    full = load_all_rows(cfg, dataset_obj)
    data = prepare_data(cfg, full)
    ds = data.dataset
    given = np.asarray(data.noisy.labels, dtype=np.int64)
    held = None
    if method == "cv":
        ctx = build_run(cfg, data=data, model=model_obj, method=False).ctx
        if holdout > 0:
            held = np.zeros(len(given), dtype=bool)
            held[holdout_split(given, holdout, cfg.seed)[1]] = True
        probs = cross_val_probs(ctx, folds, seed=cfg.seed, log=log, exclude=held)
        sc = flag_scores(given, probs)
        info.update(
            folds=folds,
            pred_probs="out-of-sample (K-fold cross-validation)",
            flagged_by=flagger_name(),
            **quality_checks(given, probs, out_of_sample=True),
        )
        if held is not None:
            info.update(
                holdout=holdout,
                num_held_out=int(held.sum()),
                held_out_accuracy_on_your_labels=float(
                    (probs[held].argmax(1) == given[held]).mean()
                ),
            )
    elif method == "incv":
        s = clean_incv(cfg.replace(method="incv"), data=data, log=log)
        probs = s["arrays"]["oos_probs"].astype(np.float32)
        sc = flag_scores(given, probs, flagged=~s["arrays"]["select"])
        info.update(
            eval_ratio=s["eval_ratio"],
            pred_probs="out-of-sample (INCV's first 2-fold iteration)",
            flagged_by="INCV's selection (not selected as clean)",
            **quality_checks(given, probs, out_of_sample=True),
        )
    else:
        extra = {} if model_obj is None else {"model": model_obj}
        res = train(cfg.replace(method=method), report=False, dataset=full, **extra)
        given, probs, sc, samples = _from_result(res)
        info.update(
            run_dir=str(res.run_dir),
            pred_probs="the main network's probabilities on the training samples "
            "(in-sample for the samples it kept)",
            flagged_by=f"{method}'s final verdicts (dropped or relabelled)",
            **quality_checks(given, probs, out_of_sample=False),
        )
    true = data.true
    rows = ds.extra.get("train_rows")
    index = data.source_index if rows is None else np.asarray(rows)[data.source_index]
    files = ds.extra.get("train_files")
    files = [files[i] for i in data.source_index] if files is not None else None
    flag = np.asarray(sc["flag"], dtype=bool)
    info.update(
        class_names=list(ds.class_names),
        num_rows_in_data=int(len(full.labels)),
        num_samples=int(len(given)),
        num_classes=int(probs.shape[1]),
        num_issues=int(flag.sum()),
        wall_time_s=time.perf_counter() - t0,
        **selection_scores(given, true, flag),
    )
    if info.get("warning"):
        warnings.warn(info["warning"], LowAccuracyWarning, stacklevel=2)
    result = LabelIssues(
        given,
        np.asarray(sc["suggested"]),
        flag,
        np.asarray(sc["label_quality"], dtype=float),
        probs,
        true,
        info,
        dataset_index=np.asarray(index, dtype=np.int64),
        class_names=list(ds.class_names),
        files=files,
        held_out=held,
    )
    if out is not None:
        result.out = Path(out)
        info["out"] = str(out)
        if dist.is_main():
            write_issues(result.out, result)
    return result
