"""Finding label errors as a product: ``noisyfit.find_label_issues(...)`` and
``noisyfit find-issues``.

Vocabulary (cleanlab's): N samples, K classes, ``labels`` the given labels, ``pred_probs``
(N, K) out-of-sample predicted probabilities. Methods (``method=``):

* ``cv`` (default): K-fold cross-validation (``folds`` = 3): a fresh network per fold is
  trained with plain cross-entropy on the other folds (``ctx.train_model``) and predicts its
  held-out fold, so every row of ``pred_probs`` is out-of-sample;
* ``incv``: INCV's iterative noisy cross-validation (:func:`noisyfit.commands.clean.clean_incv`,
  options in ``method_options``); flagged = not selected as clean; ``pred_probs`` are the first
  iteration's 2-fold out-of-sample probabilities;
* any registered training method (``coteaching``, ``selfie``, ... — ``noisyfit list methods``):
  one run of the method (a normal run folder); flagged = the method's final verdict
  dropped or relabelled (suggested label: the one it trained on); ``pred_probs`` are the main
  network's probabilities on the training samples — not out-of-sample in the strict sense
  (the network saw the samples it kept), recorded as such in ``issues_summary.json``.

For ``cv`` a sample is flagged when its given label is not the top prediction (the INCV
rule). ``label_quality`` is the probability of the given label (cleanlab's self-confidence);
``suggested_label`` the top prediction (or the method's new label).

Writes into ``out``: ``label_issues.csv`` (index, given_label, suggested_label,
is_label_issue, label_quality — cleanlab's columns, ``index`` the row of ``pred_probs`` — then
dataset_index, the sample's position in the dataset's full training split, and true_label where
a truth exists), ``pred_probs.npy`` (N, K)
float32, ``given_labels.npy``, ``issues_summary.json``. Where the truth exists (injected noise),
the summary holds the error precision/recall of the flagged set (share of flagged labels that
are wrong; share of wrong labels flagged) and LP/LR of the kept set.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

#: Methods that are not registered training methods.
BUILTIN = ("cv", "incv")


@dataclass
class LabelIssues:
    """What :func:`find_label_issues` returns. Arrays are over the N training samples.

    Attributes:
        given_labels: (N,) int64.  suggested_labels: (N,) int64.
        is_label_issue: (N,) bool.  label_quality: (N,) float in [0, 1] (low = suspect).
        pred_probs: (N, K) float32.  true_labels: (N,) int64 or None.
        summary: counts, method, timing and (with truth) precision/recall.
        dataset_index: (N,) each sample's position in the dataset's full training split
            (differs from the row when --train-subset or a probe set took samples out).
        out: the folder written to, or None.
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

    def ranked(self) -> np.ndarray:
        """Indices of the flagged samples, most suspect (lowest label quality) first."""
        idx = np.flatnonzero(self.is_label_issue)
        return idx[np.argsort(self.label_quality[idx], kind="stable")]


def flag_scores(
    given: np.ndarray,
    pred_probs: np.ndarray,
    flagged: np.ndarray | None = None,
    suggested: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """label_quality (self-confidence), suggested label (argmax unless given) and the flag
    (argmax ≠ given label unless given)."""
    q = pred_probs[np.arange(len(given)), given]
    sugg = pred_probs.argmax(1) if suggested is None else suggested
    flag = (pred_probs.argmax(1) != given) if flagged is None else flagged
    return {"label_quality": q, "suggested": sugg, "flag": flag}


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


def write_issues(out: Path, res: LabelIssues) -> None:
    from .engine.run import write_json

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "label_issues.csv", "w", newline="") as f:
        w = csv.writer(f)
        head = ["index", "given_label", "suggested_label", "is_label_issue", "label_quality"]
        head += ["dataset_index"] if res.dataset_index is not None else []
        w.writerow(head + (["true_label"] if res.true_labels is not None else []))
        for i in range(len(res.given_labels)):
            row = [
                i,
                int(res.given_labels[i]),
                int(res.suggested_labels[i]),
                bool(res.is_label_issue[i]),
                f"{res.label_quality[i]:.6g}",
            ]
            if res.dataset_index is not None:
                row.append(int(res.dataset_index[i]))
            if res.true_labels is not None:
                row.append(int(res.true_labels[i]))
            w.writerow(row)
    np.save(out / "pred_probs.npy", res.pred_probs.astype(np.float32))
    np.save(out / "given_labels.npy", res.given_labels)
    write_json(out / "issues_summary.json", res.summary)


def cross_val_probs(
    ctx, folds: int, *, seed: int = 0, epochs: int | None = None, log=print
) -> np.ndarray:
    """(N, K) out-of-sample probabilities by ``folds``-fold cross-validation on a Context."""
    import torch

    from .analysis.incv import predict_on

    n = ctx.num_samples
    if folds < 2:
        raise ConfigError(f"cross-validation needs folds ≥ 2, got {folds}")
    perm = np.random.default_rng(seed).permutation(n)
    probs = np.zeros((n, ctx.num_classes), dtype=np.float32)
    for f, part in enumerate(np.array_split(perm, folds)):
        held = torch.zeros(n, dtype=torch.bool, device=ctx.device)
        held[torch.as_tensor(part, device=ctx.device)] = True
        model = ctx.train_model(~held, epochs=epochs, describe=f"fold {f + 1}/{folds} ")
        probs[np.sort(part)] = predict_on(ctx, model, held).cpu().numpy()
        if log:
            log(f"fold {f + 1}/{folds}: trained on {n - len(part)}, predicted {len(part)}")
    return probs


def _from_result(res) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict]:
    """(given, pred_probs, scores, samples) of a finished training run (a TrainResult)."""
    from .analysis.incv import predict_on
    from .report import read_samples

    samples = read_samples(res.run_dir)
    given = samples["given"]
    probs = predict_on(res.method.ctx, res.method.main_model).cpu().numpy().astype(np.float32)
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


def find_label_issues(
    config=None,
    /,
    *,
    method: str = "cv",
    folds: int = 3,
    out: str | Path | None = None,
    log=print,
    **overrides: Any,
) -> LabelIssues:
    """Train with ``method`` and return (and write, with ``out``) the per-sample label issues.

    Args:
        config: a TrainConfig, a YAML file, or None (defaults); ``overrides`` change fields,
            e.g. ``dataset="arrays", data_dir="mine.npz", noise="none"``.
        method: ``cv``, ``incv`` or any registered method name (see the module docstring).
        folds: K of ``cv``.
        out: folder for label_issues.csv, pred_probs.npy, issues_summary.json (None: nothing
            written; registered methods still write their run folder under ``config.out``).
        log: where progress lines go (None: silent).

    Example::

        res = noisyfit.find_label_issues(dataset="arrays", data_dir="mine.npz", noise="none")
        res.ranked()[:20], res.pred_probs   # pred_probs go to cleanlab as they are
    """
    from .api import build_context, prepare_data, seed_everything
    from .config import resolve_config
    from .methods import _builtin  # noqa: F401
    from .methods.base import METHODS

    cfg = resolve_config(config, **overrides)
    if method not in BUILTIN and method not in METHODS:
        raise ConfigError(
            f"unknown method {method!r} for finding label issues; choose from "
            f"{', '.join([*BUILTIN, *METHODS.names()])}"
        )
    t0 = time.perf_counter()
    info: dict[str, Any] = {
        "method": method,
        "dataset": cfg.dataset,
        "model": cfg.model,
        "noise": cfg.noise,
        "nominal_noise_rate": cfg.noise_rate,
    }
    if method == "cv":
        seed_everything(cfg.seed, cfg.deterministic)
        data = prepare_data(cfg)
        ctx, _ = build_context(cfg, data)
        given = data.noisy.labels
        probs = cross_val_probs(ctx, folds, seed=cfg.seed, log=log)
        sc = flag_scores(given, probs)
        info.update(folds=folds, pred_probs="out-of-sample (K-fold cross-validation)")
    elif method == "incv":
        from .commands.clean import clean_incv

        seed_everything(cfg.seed, cfg.deterministic)
        data = prepare_data(cfg)
        given = data.noisy.labels
        s = clean_incv(cfg.replace(method="incv"), data=data, log=log)
        probs = s["arrays"]["oos_probs"].astype(np.float32)
        sc = flag_scores(given, probs, flagged=~s["arrays"]["select"])
        info.update(
            eval_ratio=s["eval_ratio"], pred_probs="out-of-sample (INCV's first 2-fold iteration)"
        )
    else:
        from .api import train

        res = train(cfg.replace(method=method), report=False)
        data = None
        given, probs, sc, samples = _from_result(res)
        info.update(
            run_dir=str(res.run_dir),
            pred_probs="the main network's probabilities on the training samples "
            "(in-sample for the samples it kept)",
        )
    true = samples["true"] if data is None else data.true
    index = _train_index(res.run_dir) if data is None else data.source_index
    flag = np.asarray(sc["flag"], dtype=bool)
    info.update(
        num_samples=int(len(given)),
        num_classes=int(probs.shape[1]),
        num_issues=int(flag.sum()),
        wall_time_s=time.perf_counter() - t0,
        **selection_scores(given, true, flag),
    )
    result = LabelIssues(
        np.asarray(given, dtype=np.int64),
        np.asarray(sc["suggested"]),
        flag,
        np.asarray(sc["label_quality"], dtype=float),
        probs,
        true,
        info,
        dataset_index=index,
    )
    if out is not None:
        result.out = Path(out)
        info["out"] = str(out)
        write_issues(result.out, result)
    return result
