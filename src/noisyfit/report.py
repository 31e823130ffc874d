"""The report of a run folder: one self-contained HTML page plus PNG figures.

``noisyfit report RUN_DIR`` (and the end of every ``noisyfit train``) writes into
``RUN_DIR/report/``::

    index.html              the page; every figure embedded as a base64 data URI, no external
                            resources (opens offline, can be mailed as one file)
    curves.png              clean test accuracy / training accuracy and the losses per epoch
    selection.png           label precision / recall (or the selected fraction) per epoch
    transition.png          nominal vs realized (vs estimated, where one exists) T as heatmaps
    balance.png             per class: given labels vs samples the method kept at the end
    suspected_errors.png    the top suspected label errors (image, given → suggested label)
    suspected_errors.csv    their table: index, given_label, suggested_label, label_quality,
                            true_label (empty where unknown)

Every section is optional: a run without truth has no precision/recall curves; a feature-vector
dataset has no image grid; suspects come from the run's ``label_issues.csv`` (written by
``noisyfit demo`` or ``noisyfit.issues.issues_from_run``) when present, else from the
checkpoint. A section that cannot be built says why on the page.

Suspected label errors are ranked by label quality = the probability the method's main network
gives the *given* label (lowest first; cleanlab's "self-confidence"); the suggested label is
its top prediction. These are in-sample predictions of the finished network unless the run
folder holds a ``label_issues.csv`` (whose ``issues_summary.json`` says how its probabilities
were made).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .analysis.incv import confusion
from .config import load_config
from .engine.checkpoint import load_checkpoint
from .errors import DataError, MissingFileError, RunError

#: File names (in the run folder) read as an estimated transition matrix (K, K), in order.
ESTIMATED_T_FILES = ("estimated_T.npy", "T_hat.npy", "t_hat.npy", "transition_estimate.npy")


# --------------------------------------------------------------------------------------------
# reading a run folder


def _read_json(p: Path) -> dict[str, Any] | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``metrics.jsonl`` (empty if missing)."""
    p = run_dir / "metrics.jsonl"
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def read_samples(run_dir: Path) -> dict[str, np.ndarray] | None:
    """``samples.csv`` as arrays (given, true (or None), verdict, label), or None."""
    p = run_dir / "samples.csv"
    if not p.is_file():
        return None
    given, true, verdict, label = [], [], [], []
    with open(p, newline="") as f:
        for row in csv.DictReader(f):
            given.append(int(row["given_label"]))
            true.append(row["true_label"])
            verdict.append(row["verdict"])
            label.append(int(row["label"]))
    t = None if any(v == "" for v in true) else np.asarray(true, dtype=np.int64)
    return {
        "given": np.asarray(given, dtype=np.int64),
        "true": t,
        "verdict": np.asarray(verdict),
        "label": np.asarray(label, dtype=np.int64),
    }


def estimated_transition(run_dir: Path, k: int) -> tuple[np.ndarray, str] | None:
    """An estimated T: a file of :data:`ESTIMATED_T_FILES`; else, with ``pred_probs.npy``
    (``noisyfit demo``, :func:`noisyfit.issues.issues_from_run`), the row-normalised counts of
    (predicted class, given label) — the predicted class standing in for the unknown truth;
    else a (K, K) ``T`` in the checkpoint's method state (F-correction's estimate); or None."""
    for name in ESTIMATED_T_FILES:
        p = run_dir / name
        if p.is_file():
            t = np.load(p)
            if t.shape == (k, k):
                return t, name
    probs, given = run_dir / "pred_probs.npy", run_dir / "noisy_labels.npy"
    if probs.is_file() and given.is_file():
        p, g = np.load(probs), np.load(given)
        if p.shape == (len(g), k):
            return confusion(p.argmax(1), g, k), "predicted class → given label, pred_probs.npy"
    ck = run_dir / "checkpoint.pt"
    if ck.is_file():
        try:
            state = load_checkpoint(ck).get("method") or {}
            for key in ("T", "T_hat", "t_hat"):
                t = state.get(key)
                if t is not None and tuple(t.shape) == (k, k):
                    return np.asarray(t.float().cpu()), f"checkpoint method state {key!r}"
        except Exception:  # noqa: BLE001 - an unreadable checkpoint only hides this panel
            return None
    return None


# --------------------------------------------------------------------------------------------
# suspected label errors


def suspected_errors(run_dir: Path, cfg=None, data=None, pred_probs=None) -> dict[str, Any]:
    """Rank the training samples by label quality (lowest first).

    Returns ``{"given", "suggested", "quality", "true" (or None), "source"}`` arrays over all
    N samples. Uses ``label_issues.csv`` of the run folder if present (out-of-sample), else
    the checkpoint's network (in-sample): ``pred_probs(run_dir, cfg, data) -> (N, K)``
    (:func:`noisyfit.api.run_pred_probs`; None: that section is skipped).
    """
    issues = run_dir / "label_issues.csv"
    if issues.is_file():
        rows = list(csv.DictReader(open(issues, newline="")))
        given = np.array([int(r["given_label"]) for r in rows])
        sugg = np.array([int(r["suggested_label"]) for r in rows])
        q = np.array([float(r["label_quality"]) for r in rows])
        true = None
        if rows and "true_label" in rows[0] and all(r["true_label"] != "" for r in rows):
            true = np.array([int(r["true_label"]) for r in rows])
        meta = _read_json(run_dir / "issues_summary.json") or {}
        return {
            "given": given,
            "suggested": sugg,
            "quality": q,
            "true": true,
            "source": f"label_issues.csv: {meta.get('pred_probs', 'pred_probs')}",
        }
    if pred_probs is None:
        raise RunError("no label_issues.csv and no network to predict with (pred_probs)")
    probs = pred_probs(run_dir, cfg, data)
    given = np.load(run_dir / "noisy_labels.npy")
    q = probs[np.arange(len(given)), given]
    return {
        "given": given,
        "suggested": probs.argmax(1),
        "quality": q,
        "true": data.true,
        "source": "the finished network's in-sample probabilities (checkpoint.pt)",
    }


def write_suspects_csv(
    path: Path,
    s: dict[str, Any],
    order: np.ndarray,
    names: list[str] | None = None,
    where: tuple[str, list] | None = None,
) -> None:
    """The top suspects; with ``names`` the class names, with ``where`` = ("file" or
    "dataset_index", one value per sample) each sample's file or row in the user's data."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        head = ["index", "given_label", "suggested_label", "label_quality", "true_label"]
        head += [where[0]] if where else []
        w.writerow(head + (["given_class", "suggested_class"] if names else []))
        for i in order:
            g, sg = int(s["given"][i]), int(s["suggested"][i])
            row = [
                int(i),
                g,
                int(s["suggested"][i]),
                f"{s['quality'][i]:.6g}",
                "" if s["true"] is None else int(s["true"][i]),
            ]
            row += [where[1][i]] if where else []
            if names:
                row += [names[g] if g < len(names) else g, names[sg] if sg < len(names) else sg]
            w.writerow(row)


# --------------------------------------------------------------------------------------------
# figures


#: The one line shown when matplotlib is missing.
NO_MATPLOTLIB = (
    "the report needs matplotlib, which is not installed here: pip install matplotlib "
    "(a dependency of noisyfit; an install with --no-deps skipped it)"
)


def _plt():
    try:
        import matplotlib  # lazy: pyplot costs ~0.4 s and needs the Agg backend chosen first
    except ImportError as e:
        raise ImportError(NO_MATPLOTLIB) from e

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after matplotlib.use("Agg")

    return plt


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for h in history:
        v = h.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(h["epoch"])
            ys.append(v)
    return xs, ys


def _int_ticks(*axes) -> None:
    from matplotlib.ticker import MaxNLocator  # lazy: matplotlib only when plotting

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


#: Summary keys shown under a clearer name: selected and last are the results; the test-set
#: maximum is an oracle (model selection on the test set), labelled as such; ``{test}`` is
#: the test split's name.
_SUMMARY_LABELS = {
    "selected_epoch": "selected epoch (best noisy-validation accuracy)",
    "selected_val_acc": "noisy-validation accuracy at the selected epoch",
    "selected_test_acc": "selected: {test} accuracy at the selected epoch",
    "last_test_acc": "last: {test} accuracy after the last epoch",
    "best_test_acc": "oracle: max over epochs of test accuracy",
    "best_epoch": "oracle epoch (max of test accuracy)",
}


def fig_curves(history: list[dict], path: Path, test_name: str = "clean test") -> None:
    """Accuracy and loss per epoch; ``test_name`` names the test split ("clean test", or
    "held-out ... on your labels" where the test labels are the user's own)."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (
        ("test_acc", f"{test_name} accuracy"),
        ("train_error", "training accuracy"),
        ("test_acc_net2", f"{test_name} accuracy (net 2)"),
        ("val_acc", "validation accuracy (given, noisy labels)"),
    ):
        xs, ys = _series(history, key)
        if key == "train_error":
            ys = [1 - y for y in ys]
        if xs:
            a1.plot(xs, ys, marker="o", ms=3, label=label)
    a1.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    _int_ticks(a1, a2)
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8)
    for key, label in (
        ("train_loss", "training loss (given labels)"),
        ("test_loss", f"{test_name} loss"),
        ("val_loss", "validation loss (given labels)"),
    ):
        xs, ys = _series(history, key)
        if xs:
            a2.plot(xs, ys, marker="o", ms=3, label=label)
    a2.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    a2.grid(alpha=0.3)
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fig_selection(history: list[dict], path: Path) -> bool:
    """Label precision/recall per epoch (plus the selected fraction); False if nothing to plot."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    any_line = False
    for key, label in (
        ("label_precision", "label precision"),
        ("label_recall", "label recall"),
        ("correction_accuracy", "correction accuracy"),
        ("selected_frac", "selected fraction"),
    ):
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, marker="o", ms=3, label=label)
            any_line = True
    ax.set(xlabel="epoch", ylim=(0, 1.02), title="selection quality (vs true labels)")
    _int_ticks(ax)
    ax.grid(alpha=0.3)
    if any_line:
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return any_line


def fig_transition(mats: list[tuple[str, np.ndarray]], path: Path) -> None:
    plt = _plt()
    k = len(mats[0][1])
    fig, axes = plt.subplots(1, len(mats), figsize=(3.8 * len(mats), 3.6), squeeze=False)
    for ax, (title, t) in zip(axes[0], mats):
        im = ax.imshow(t, vmin=0, vmax=1, cmap="viridis")
        ax.set(title=title, xlabel="noisy label j", ylabel="true label i")
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    ax.text(
                        j,
                        i,
                        f"{t[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="w" if t[i, j] < 0.5 else "k",
                    )
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def fig_balance(
    samples: dict[str, np.ndarray], k: int, names: list[str] | None, path: Path
) -> None:
    plt = _plt()
    given = np.bincount(samples["given"], minlength=k)
    kept_mask = np.isin(samples["verdict"], ["kept", "relabelled"])
    kept = np.bincount(samples["label"][kept_mask], minlength=k)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * k), 3.6))
    ax.bar(x - 0.2, given, 0.4, label="given labels")
    ax.bar(x + 0.2, kept, 0.4, label="kept at the end (label trained on)")
    if samples["true"] is not None:
        ax.plot(x, np.bincount(samples["true"], minlength=k), "k_", ms=12, label="true labels")
    ax.set(xlabel="class", ylabel="samples", title="per-class selection balance")
    if names and k <= 20:
        ax.set_xticks(x, [str(n)[:10] for n in names], rotation=45, ha="right", fontsize=7)
    elif k <= 20:
        ax.set_xticks(x)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _to_image(x: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 → (H, W) or (H, W, 3) for imshow."""
    return x[0] if x.shape[0] == 1 else np.transpose(x[:3], (1, 2, 0))


def fig_suspects(
    images: np.ndarray, rows: list[tuple[int, str, str, float, bool | None]], path: Path
) -> None:
    plt = _plt()
    n = len(rows)
    cols = min(8, n)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(1.6 * cols, 1.9 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, (idx, g, s, q, wrong) in zip(axes.flat, images, rows):
        ax.imshow(_to_image(img), cmap="gray" if img.shape[0] == 1 else None)
        color = "k" if wrong is None else ("tab:green" if wrong else "tab:red")
        ax.set_title(f"#{idx} q={q:.2f}\n{g[:9]} → {s[:9]}", fontsize=7, color=color)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# the page


def _img(path: Path, alt: str) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'


def _table(d: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in d.items()
    )
    return f"<table>{rows}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return "" if v is None else str(v)


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em}th,td{border:1px solid #ddd;padding:2px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}img{max-width:100%}
.note{color:#666;font-size:.85em}"""


#: Inline check run by the browser: marks <html data-figures="shown/total"> once every figure
#: has decoded, and logs a console error for a figure that did not (tests read both).
CHECK_JS = """window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0){ok++;}else{
console.error('figure not shown: '+im[i].alt);}}
document.documentElement.setAttribute('data-figures',ok+'/'+im.length);});"""


def build_report(
    run_dir: str | Path,
    *,
    top: int = 32,
    log=print,
    data=None,
    load_data=None,
    pred_probs=None,
) -> Path:
    """Write ``RUN_DIR/report/index.html`` and its PNGs (see the module docstring).

    Args:
        run_dir: a run folder (``config.yaml`` required; every other file optional).
        top: number of suspected label errors in the grid and the CSV.
        log: where a line per skipped section goes (None: silent).
        data: the run's :class:`~noisyfit.api.PreparedData` if at hand (else loaded again
            from ``config.yaml`` with ``load_data(cfg)``, e.g. :func:`noisyfit.api.prepare_data`;
            None: the panels that need the data are skipped).
        pred_probs: ``(run_dir, cfg, data) -> (N, K)`` probabilities of the run's network
            (:func:`noisyfit.api.run_pred_probs`), for the suspected errors of runs without
            ``label_issues.csv`` (None: that section is skipped).
            :func:`noisyfit.api.report_run` passes both.

    Returns:
        The path of ``index.html``.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise MissingFileError(f"{run_dir} is not a run folder (no config.yaml)")
    _plt()  # fails first, with the one-line fix, where matplotlib is missing
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    cfg = load_config(run_dir / "config.yaml")
    summary = _read_json(run_dir / "summary.json") or {}
    env = _read_json(run_dir / "env.json") or {}
    manifest = _read_json(run_dir / "noise.json") or {}
    history = read_history(run_dir)
    samples = read_samples(run_dir)
    # no truth (the user's own labels, --noise none on real-noise data): truth-only panels are
    # hidden and the test split is "held-out ... on your labels", not a clean test set
    truth = manifest.get("realized_rate") is not None or (
        samples is not None and samples.get("true") is not None
    )
    test_name = "clean test" if truth else "held-out (your labels)"
    sections: list[str] = []
    notes: list[str] = []

    def skip(title: str, why: str) -> None:
        notes.append(f"{title}: {why}")
        sections.append(f"<h2>{html.escape(title)}</h2><p class=note>{html.escape(why)}</p>")
        if log:
            log(f"report: {title}: {why}")

    # summary
    keys = (
        "method",
        "dataset",
        "model",
        "noise",
        "nominal_noise_rate",
        "realized_noise_rate",
        "tau",
        "epochs",
        "val_ratio",
        "selected_epoch",
        "selected_val_acc",
        "selected_test_acc",
        "last_test_acc",
        "best_test_acc",
        "best_epoch",
        "last_label_precision",
        "last_label_recall",
        "wall_time_s",
        "mean_images_per_s",
    )
    truth_keys = ("nominal_noise_rate", "realized_noise_rate", "tau")
    truth_keys += ("last_label_precision", "last_label_recall")
    if not truth:
        keys = tuple(k for k in keys if k not in truth_keys)
    if cfg.noise == "none":
        keys = tuple(k for k in keys if k != "nominal_noise_rate")
    renamed = {k: v.format(test=test_name) for k, v in _SUMMARY_LABELS.items()}
    sections.append(
        "<h2>Summary</h2>"
        + (
            _table({renamed.get(k, k): summary.get(k) for k in keys})
            if summary
            else "<p class=note>no summary.json (run unfinished)</p>"
        )
    )
    # curves
    if history:
        fig_curves(history, out / "curves.png", test_name)
        sections.append("<h2>Accuracy and loss</h2>" + _img(out / "curves.png", "curves"))
        if not truth:
            pass  # label precision/recall need the true labels
        elif fig_selection(history, out / "selection.png"):
            sections.append(
                "<h2>Label precision and recall</h2>"
                "<p class=note>label precision: share of the selected samples "
                "whose given label is right; label recall: share of the rightly "
                "labelled samples selected.</p>" + _img(out / "selection.png", "selection")
            )
        else:
            skip("Label precision and recall", "no selection metrics were logged")
    else:
        skip("Accuracy and loss", "metrics.jsonl is missing or empty")
    # transition matrices
    k = manifest.get("num_classes")
    if not truth:
        pass  # no injected noise, no truth: no transition to show
    elif k and manifest.get("nominal_T") is not None:
        mats = [("nominal T", np.asarray(manifest["nominal_T"], dtype=float))]
        if manifest.get("realized_T") is not None:
            mats.append(("realized T", np.asarray(manifest["realized_T"], dtype=float)))
        est = estimated_transition(run_dir, k)
        if est is not None:
            mats.append((f"estimated T ({est[1]})", est[0]))
        fig_transition(mats, out / "transition.png")
        sections.append(
            "<h2>Noise transition T[i, j] = P(label j | true i)</h2>"
            + _img(out / "transition.png", "transition matrices")
        )
    else:
        skip("Noise transition", "no nominal T in noise.json (noise none, or no manifest)")
    # the training data (class names, images of suspects)
    data_error: Exception | None = None
    try:
        if data is None and load_data is None:
            raise RunError("no data given and no loader (load_data)")
        data = data if data is not None else load_data(cfg)
    except Exception as e:  # noqa: BLE001 - dataset gone or changed: those panels are skipped
        data, data_error = None, e
    names = data.dataset.class_names if data is not None else None
    # per-class balance
    if samples is not None:
        kk = int(k or max(samples["given"].max(), samples["label"].max()) + 1)
        fig_balance(samples, kk, names, out / "balance.png")
        counts = {
            str(v): int((samples["verdict"] == v).sum()) for v in np.unique(samples["verdict"])
        }
        sections.append(
            "<h2>Per-class selection balance</h2>"
            + _img(out / "balance.png", "balance")
            + f"<p class=note>final verdicts: {html.escape(str(counts))}"
            "</p>"
        )
    else:
        skip("Per-class selection balance", "samples.csv is missing (run unfinished)")
    # suspected errors
    try:
        if data is None:
            raise data_error or RuntimeError("no data")
        saved = run_dir / "noisy_labels.npy"
        if saved.is_file() and len(np.load(saved)) != len(data.dataset):
            raise DataError("the dataset no longer matches the run's noisy_labels.npy")
        s = suspected_errors(run_dir, cfg, data, pred_probs)
        order = np.argsort(s["quality"], kind="stable")[:top]
        # each sample as the user knows it: its file, or its row in the user's array
        extra, src = data.dataset.extra, data.source_index
        where = None
        if src is not None and len(src) == len(s["given"]):
            if extra.get("train_files") is not None:
                where = ("file", [extra["train_files"][j] for j in src])
            elif extra.get("train_rows") is not None:
                where = ("dataset_index", [int(extra["train_rows"][j]) for j in src])
        write_suspects_csv(out / "suspected_errors.csv", s, order, names, where)

        def nm(c: int) -> str:
            return str(names[c]) if names and c < len(names) else str(c)

        rows = []
        for i in order:
            g, sg = int(s["given"][i]), int(s["suggested"][i])
            wrong = None if s["true"] is None else bool(s["true"][i] != g)
            rows.append((int(i), nm(g), nm(sg), float(s["quality"][i]), wrong))
        label_of = {int(i): ("" if where is None else str(where[1][i])) for i in order}
        cap = (
            f"ranked by label quality (probability of the given label; source: "
            f"{s['source']}); title: index, quality, given → suggested label"
        )
        if s["true"] is not None:
            hit = sum(1 for r in rows if r[4])
            cap += (
                f"; green = the given label is truly wrong ({hit} of {len(rows)}), red = it "
                "is right"
            )
        if data.dataset.is_image:
            fig_suspects(data.dataset.x[order], rows, out / "suspected_errors.png")
            body = _img(out / "suspected_errors.png", "suspected label errors")
        else:
            body = "<p class=note>feature-vector data: no images to show</p>"
        wcol = "" if where is None else f"<th>{where[0]}</th>"
        tab = "".join(
            f"<tr><td>{r[0]}</td>"
            + ("" if where is None else f"<td>{html.escape(label_of[r[0]])}</td>")
            + f"<td>{html.escape(r[1])}</td><td>{html.escape(r[2])}"
            f"</td><td>{r[3]:.3f}</td>"
            + ("" if s["true"] is None else f"<td>{'' if r[4] is None else r[4]}</td>")
            + "</tr>"
            for r in rows
        )
        tcol = "" if s["true"] is None else "<th>truly wrong</th>"
        sections.append(
            f"<h2>Top {len(rows)} suspected label errors</h2><p class=note>"
            f"{html.escape(cap)}</p>{body}<details><summary>table</summary><table>"
            f"<tr><th>index</th>{wcol}<th>given</th><th>suggested</th><th>quality</th>"
            f"{tcol}</tr>{tab}</table></details>"
        )
    except Exception as e:  # noqa: BLE001 - the rest of the report still stands
        skip("Suspected label errors", f"not available ({type(e).__name__}: {e})")
    # config and environment
    sections.append("<h2>Configuration</h2>" + _table(cfg.to_dict()))
    sections.append("<h2>Environment</h2>" + _table(env))
    man = {k: v for k, v in manifest.items() if not k.endswith("_T")}
    sections.append("<h2>Noise manifest</h2>" + _table(man))
    noise = (
        "your own labels (no noise injected)"
        if cfg.noise == "none" and not truth
        else "no injected noise"
        if cfg.noise == "none"
        else f"{cfg.noise} noise {cfg.noise_rate:g}"
    )
    title = f"noisyfit run {run_dir.name}: {cfg.method} on {cfg.dataset}, {noise}"
    page = (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>"
        f"{html.escape(title)}</title><style>{CSS}</style></head><body><h1>"
        f"{html.escape(title)}</h1><p class=note>run folder: {html.escape(str(run_dir))}"
        f"</p>{''.join(sections)}<script>{CHECK_JS}</script></body></html>\n"
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"
