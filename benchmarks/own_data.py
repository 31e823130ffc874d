"""Issue #10's two trials as a new user: your own data with swapped labels, through
``noisyfit find-issues``, and the flags' precision/recall against the swaps beside
cleanlab's own filters on the same ``pred_probs``.

    python benchmarks/own_data.py [--epochs 15 40] [--out docs/benchmarks/own_data.md]

Trial 1: an ``arrays`` .npz of 800 Fashion-MNIST training images (uint8 (N, 28, 28), class
names stored) with 80 labels swapped to another class. Trial 2: an image folder of 300 PNGs
(``<class>/<id>.png``) with 30 images put in a wrong class's folder. Both use cnn-small,
3-fold cross-validation, seed 0. The script checks that every row comes back once, in the
user's order, with ``dataset_index``/``file`` and ``given_label`` matching the user's data.
cleanlab (``pip install cleanlab``) is needed for its columns; ≈ 1-2 min CPU with one thread.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def fashion(n: int, seed: int):
    """(x uint8 (n, 28, 28), y, class names): a seeded class-balanced draw of training images."""
    sys.path.insert(0, str(ROOT / "src"))
    from noisyfit.data.base import load_dataset

    ds = load_dataset("fashion-mnist")
    rng = np.random.default_rng(seed)
    per = n // ds.num_classes
    idx = np.concatenate(
        [rng.choice(np.flatnonzero(ds.labels == c), per, replace=False) for c in range(10)]
    )
    idx = rng.permutation(idx)
    return ds.x[idx, 0], ds.labels[idx], list(ds.class_names)


def swap(y: np.ndarray, n_swap: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(given labels, the swapped rows): ``n_swap`` rows moved to a different random class."""
    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.choice(len(y), n_swap, replace=False))
    given = y.copy()
    given[rows] = (y[rows] + rng.integers(1, k, n_swap)) % k
    return given, rows


def make_npz(path: Path, n=800, n_swap=80, seed=0):
    x, y, names = fashion(n, seed)
    given, rows = swap(y, n_swap, 10, seed)
    np.savez(path, x=x, y=given, class_names=np.array(names))
    return given, rows


def make_folder(root: Path, n=300, n_swap=30, seed=0):
    from PIL import Image

    x, y, names = fashion(n, seed + 10)
    given, rows = swap(y, n_swap, 10, seed)
    files = []
    for i in range(n):
        f = root / folder_name(names[given[i]]) / f"img{i:04d}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(f)
        files.append(str(f.relative_to(root)))
    return given, rows, files, [folder_name(n) for n in names]


def folder_name(cls: str) -> str:
    return cls.replace("/", "-")


def find_issues_cli(args: list[str]) -> float:
    """Run ``noisyfit find-issues`` as a user would; returns its CPU seconds."""
    t0 = time.time()
    cmd = [sys.executable, "-m", "noisyfit", "find-issues", *args]
    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    print(r.stdout[-1500:])
    if r.returncode:
        raise SystemExit(f"find-issues failed:\n{r.stderr[-3000:]}")
    return time.time() - t0


def pr(flag: np.ndarray, wrong: np.ndarray) -> tuple[int, float, float]:
    tp = int((flag & wrong).sum())
    return int(flag.sum()), tp / max(int(flag.sum()), 1), tp / max(int(wrong.sum()), 1)


def score(out: Path, given, swapped, files=None, names=None) -> dict:
    """Checks that every user row comes back once, in order, and the precision/recall table.
    For a folder the user's order is the sorted file paths; rows are matched by file."""
    rows = list(csv.DictReader(open(out / "label_issues.csv")))
    probs = np.load(out / "pred_probs.npy")
    summ = json.loads((out / "issues_summary.json").read_text())
    n = len(given)
    wrong = np.zeros(n, dtype=bool)
    wrong[swapped] = True
    checks = {"rows back": f"{len(rows)} of {n}"}
    if files is not None:  # reorder the truth into the folder's sorted order
        order = np.argsort(np.array(files), kind="stable")
        checks["each file once"] = sorted(r["file"] for r in rows) == sorted(files)
        checks["rows = sorted files"] = [r["file"] for r in rows] == [files[i] for i in order]
        given, wrong = given[order], wrong[order]
        # a folder's class indices follow the sorted folder names: compare the names, then
        # score in the folder's index space
        checks["given_class = user's folder"] = all(
            r["given_class"] == names[given[i]] for i, r in enumerate(rows)
        )
        given = np.array([int(r["given_label"]) for r in rows])
    else:
        checks["given_label = user's label"] = all(
            int(r["given_label"]) == given[i] for i, r in enumerate(rows)
        )
    checks["dataset_index = row"] = all(int(r["dataset_index"]) == i for i, r in enumerate(rows))
    flag = np.array([r["is_label_issue"] == "True" for r in rows])
    q = np.array([float(r["label_quality"]) for r in rows])
    lowest = np.argsort(q, kind="stable")[: len(swapped)]
    table = {"noisyfit find-issues (is_label_issue)": pr(flag, wrong)}
    table[f"lowest {len(swapped)} label_quality"] = pr(np.isin(np.arange(n), lowest), wrong)
    table["argmax ≠ given (the old flag)"] = pr(probs.argmax(1) != given, wrong)
    sys.path.insert(0, str(ROOT / "src"))
    from noisyfit.issues import label_issue_mask

    fb = label_issue_mask(given, probs, backend="fallback")
    table["noisyfit's fallback (without cleanlab)"] = pr(fb, wrong)
    try:
        import cleanlab
        import cleanlab.filter as cf

        for fb in ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning"):
            m = cf.find_label_issues(given, probs, filter_by=fb, n_jobs=1)
            table[f"cleanlab {cleanlab.__version__} filter_by={fb}"] = pr(m, wrong)
    except ImportError:
        table["cleanlab"] = "not installed"
    return {"checks": checks, "summary": summ, "table": table}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, nargs="+", default=[15], help="one trial pair each")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks/own_data.md")
    a = ap.parse_args(argv)
    results = {}
    for ep in a.epochs:
        common = ["--noise", "none", "--model", "cnn-small", "--epochs", str(ep)]
        common += ["--no-progress", "--seed", "0", "--folds", "3"]
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            given, swapped = make_npz(tmp / "mine.npz")
            s = find_issues_cli(
                ["--dataset", "arrays", "--data-dir", str(tmp / "mine.npz"), "--out", str(tmp)]
                + ["--name", "npz", *common]
            )
            results[f"arrays .npz, 800 rows, 80 swapped; {ep} epochs per fold"] = {
                **score(tmp / "npz", given, swapped),
                "s": s,
            }
            given, swapped, files, names = make_folder(tmp / "photos")
            s = find_issues_cli(
                ["--dataset", "imagefolder", "--data-dir", str(tmp / "photos"), "--out", str(tmp)]
                + ["--name", "folder", *common]
            )
            results[f"image folder, 300 PNGs, 30 swapped; {ep} epochs per fold"] = {
                **score(tmp / "folder", given, swapped, files, names),
                "s": s,
            }
    lines = [
        "# Your own data: find-issues on swapped labels (issue #10's two trials)",
        "",
        f"Made by `python benchmarks/own_data.py --epochs {' '.join(map(str, a.epochs))}` "
        "(cnn-small, 3-fold cross-validation, seed 0, CPU, "
        "one torch thread; wall seconds on a shared 2-core machine). Precision = share of the "
        "flagged rows that were swapped; recall = share of the swaps flagged; all rows of a "
        "table use the same `pred_probs.npy`.",
        "",
    ]
    for name, r in results.items():
        s = r["summary"]
        lines += [
            f"## {name}",
            "",
            "Rows: " + "; ".join(f"{k}: {v}" for k, v in r["checks"].items()) + ".",
            f"Out-of-fold accuracy on the given labels {s['oof_accuracy']:.3f}, estimated noise "
            f"rate {s['estimated_noise_rate']:.3f} (true: 0.100); "
            f"flags by {s['flagged_by']}; {r['s']:.0f} s wall.",
            "",
            "| flags | flagged | precision | recall |",
            "|---|---:|---:|---:|",
        ]
        for k, v in r["table"].items():
            if isinstance(v, str):
                lines.append(f"| {k} | {v} | | |")
            else:
                lines.append(f"| {k} | {v[0]} | {v[1]:.3f} | {v[2]:.3f} |")
        lines.append("")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
