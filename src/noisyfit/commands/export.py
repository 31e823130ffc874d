"""``noisyfit export ISSUES --out DIR``: write the cleaned dataset of a ``find-issues`` result.

::

    noisyfit find-issues --dataset arrays --data-dir mine.npz --noise none --name mine
    noisyfit export runs/mine --out cleaned/                 # flagged rows dropped
    noisyfit export runs/mine --out cleaned/ --action relabel   # flagged rows relabelled

``ISSUES`` is a find-issues folder (``label_issues.csv`` + ``issues_summary.json``). For an
``arrays`` .npz: ``DIR/cleaned.npz`` holds the kept rows of every per-row array of the user's
file (``x`` in its own layout, other arrays of length N alike), ``y`` the new labels, ``rows``
each kept row's index in the original ``x``, ``relabelled`` a bool mark; ``x_test``/``y_test``
and ``class_names`` are copied. For an ``imagefolder``: ``DIR/<class>/<file name>`` copies of
the kept images, relabelled ones filed under their new class. Both write ``DIR/changes.csv``:
one line per dropped or relabelled row (row or file, given and new class, action).
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from ..cli import command, parse_args
from ..errors import ConfigError, MissingFileError


def read_issues(folder: Path) -> tuple[list[dict], dict]:
    f = folder / "label_issues.csv"
    if not f.is_file():
        raise MissingFileError(
            f"{folder}: no label_issues.csv; pass a folder written by noisyfit find-issues"
        )
    summ = folder / "issues_summary.json"
    meta = json.loads(summ.read_text()) if summ.is_file() else {}
    return list(csv.DictReader(open(f, newline=""))), meta


def plan(rows: list[dict], action: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keep (N,) bool, new label (N,), relabelled (N,) bool) for ``drop`` or ``relabel``."""
    flag = np.array([r["is_label_issue"] == "True" for r in rows], dtype=bool)
    given = np.array([int(r["given_label"]) for r in rows], dtype=np.int64)
    sugg = np.array([int(r["suggested_label"]) for r in rows], dtype=np.int64)
    if action == "drop":
        return ~flag, given, np.zeros(len(rows), dtype=bool)
    relab = flag & (sugg != given)
    return np.ones(len(rows), dtype=bool), np.where(relab, sugg, given), relab


def export(folder: Path, out: Path, action: str = "drop", data_dir: str | None = None) -> dict:
    """Write the cleaned dataset of find-issues folder ``folder`` into ``out``; returns counts."""
    rows, meta = read_issues(folder)
    dataset = meta.get("dataset")
    src = data_dir or meta.get("data_dir")
    if dataset not in ("arrays", "imagefolder") or src is None:
        raise ConfigError(
            f"{folder}: export needs find-issues on --dataset arrays or imagefolder (this is "
            f"{dataset!r}{'' if src else ', no data_dir recorded'}); for other data use "
            "label_issues.csv directly"
        )
    keep, new, relab = plan(rows, action)
    names = meta.get("class_names") or [str(k) for k in range(int(new.max()) + 1)]
    out.mkdir(parents=True, exist_ok=True)
    if dataset == "arrays":
        index = np.array([int(r["dataset_index"]) for r in rows], dtype=np.int64)
        path = Path(src)
        path = next(iter(sorted(path.glob("*.npz")))) if path.is_dir() else path
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        n = len(data["y"])
        kept = index[keep]
        fixed = ("x_test", "y_test", "class_names")
        res = {
            k: v[kept]
            for k, v in data.items()
            if k not in fixed and len(np.shape(v)) and len(v) == n
        }
        res.update({k: v for k, v in data.items() if k not in res})
        res.update(y=new[keep], rows=kept, relabelled=relab[keep])
        np.savez(out / "cleaned.npz", **res)
        ids = index.tolist()
    else:
        files = [r["file"] for r in rows]
        root = Path(src)
        used: set[Path] = set()
        for i in np.flatnonzero(keep):
            dst = out / names[new[i]] / Path(files[i]).name
            if dst in used or dst.exists():  # same name in two folders: keep both
                dst = dst.with_name(f"{Path(files[i]).parent.name}-{dst.name}")
            used.add(dst)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / files[i], dst)
        ids = files
    with open(out / "changes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row" if dataset == "arrays" else "file", "given_class", "new_class", "action"])
        for i in range(len(rows)):
            g = int(rows[i]["given_label"])
            if not keep[i]:
                w.writerow([ids[i], names[g], "", "dropped"])
            elif relab[i]:
                w.writerow([ids[i], names[g], names[new[i]], "relabelled"])
    return {
        "rows": len(rows),
        "kept": int(keep.sum()),
        "dropped": int((~keep).sum()),
        "relabelled": int(relab.sum()),
    }


@dataclass
class ExportArgs:
    """Write the cleaned dataset of a find-issues folder: flagged rows dropped (--action drop,
    default) or relabelled with the suggested label (--action relabel), as DIR/cleaned.npz
    (arrays) or DIR/<class>/ image copies (imagefolder), plus DIR/changes.csv."""

    issues: tyro.conf.Positional[Path]
    """The find-issues folder (label_issues.csv, issues_summary.json)."""
    out: Path
    """Folder to write the cleaned dataset into."""
    action: Literal["drop", "relabel"] = "drop"
    data_dir: str | None = None
    """The data, if it moved since find-issues ran."""


@command("export", help="write the cleaned dataset of a find-issues result (.npz or folder)")
def cmd_export(argv: Sequence[str]) -> int:
    """noisyfit export ISSUES_DIR --out DIR [--action drop|relabel] [--data-dir PATH]"""
    a = parse_args(ExportArgs, argv, prog="noisyfit export")
    c = export(a.issues, a.out, a.action, a.data_dir)
    print(
        f"{c['kept']} of {c['rows']} rows kept, {c['dropped']} dropped, {c['relabelled']} "
        f"relabelled; wrote {a.out} and {a.out / 'changes.csv'}"
    )
    return 0
