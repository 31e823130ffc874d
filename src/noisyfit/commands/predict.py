"""``noisyfit predict RUN --data PATH``: predict classes with a trained run's network.

::

    noisyfit predict runs/my-run --data new.npz                 # arrays: the x of an .npz
    noisyfit predict runs/my-run --data photos/ --out pred.csv  # every image under a folder

Writes a CSV (default ``RUN/predictions.csv``) with one row per input, in input order: ``row``
(the index in ``x``) or ``file`` (the path under the folder, sorted), ``predicted_label``,
``predicted_class``, then one probability column per class (``p_<class name>``, in class index
order). Inputs are normalized with the training data's statistics and images resized to the
training size. Runs of an in-memory model (``model=`` a factory) predict from Python:
``RobustClassifier.predict_proba``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import tyro

from ..classifier import predict_inputs
from ..cli import command, parse_args
from ..config import load_config
from ..data.base import MalformedDataError, load_dataset
from ..data.folder import _decode_images, _image_files, _inputs
from ..engine.checkpoint import load_checkpoint
from ..errors import ConfigError, MissingFileError
from ..models import build_model


def load_run_network(run: Path, device: str = "cpu"):
    """(network in eval mode, its TrainConfig, the training Dataset) of a run folder."""
    if not (run / "config.yaml").is_file():
        raise MissingFileError(f"{run} is not a run folder (no config.yaml); pass a train run")
    if not (run / "checkpoint.pt").is_file():
        raise MissingFileError(
            f"{run}: no checkpoint.pt (trained with --no-checkpoint?); train again with "
            "checkpoints on to predict from the command line"
        )
    cfg = load_config(run / "config.yaml")
    if cfg.model == "custom" or cfg.dataset == "in-memory":
        raise ConfigError(
            f"{run} was trained on in-memory data or a custom model; predict from Python "
            "(noisyfit.RobustClassifier.predict_proba)"
        )
    meta = run / "data.json"
    if meta.is_file():  # the training data's layout and statistics, as the run recorded them
        ds = SimpleNamespace(**json.loads(meta.read_text()))
        ds.input_shape = tuple(ds.input_shape)
        ds.num_classes, ds.is_image = len(ds.class_names), len(ds.input_shape) == 3
    else:  # older runs: reload the training data (with its default hold-out, as trained)
        ds = load_dataset(cfg.dataset, cfg.data_dir)
    ck = load_checkpoint(run / "checkpoint.pt")
    states = ck["models"]
    state = states.get("net") or next(iter(states.values()))
    if cfg.model.startswith("torchvision:"):
        raise ConfigError(f"{run}: torchvision models predict from Python (RobustClassifier)")
    net = build_model(cfg.model, ds.num_classes, ds.input_shape)
    net.load_state_dict(state)
    return net.to(torch.device(device)).eval(), cfg, ds


def read_inputs(path: Path, ds) -> tuple[np.ndarray, list[str] | None]:
    """(inputs in the training layout, file names or None) from an .npz (its ``x``) or an image
    folder (every image under it, sorted)."""
    if path.is_dir():
        files = _image_files(path)
        if not files:
            raise MalformedDataError(f"{path}: no images found under this folder")
        if not ds.is_image:
            raise MalformedDataError(f"{path}: the run was trained on feature vectors, not images")
        x = _decode_images(files, tuple(ds.input_shape[1:]))
        c = ds.input_shape[0]
        if x.shape[1] != c:  # gray ↔ RGB to the training channels
            x = x.mean(1, keepdims=True).astype(np.uint8) if c == 1 else np.repeat(x, 3, axis=1)
        return x, [str(f.relative_to(path)) for f in files]
    if path.suffix != ".npz" or not path.is_file():
        raise MissingFileError(f"{path}: expected an .npz file with x, or a folder of images")
    with np.load(path, allow_pickle=False) as z:
        if "x" not in z.files:
            raise MalformedDataError(f"{path}: no array 'x' (has {sorted(z.files)})")
        x = _inputs(z["x"], "x", path)
    if tuple(x.shape[1:]) != tuple(ds.input_shape):
        raise MalformedDataError(
            f"{path}: x rows have shape {tuple(x.shape[1:])}; the run was trained on "
            f"{tuple(ds.input_shape)}"
        )
    return x, None


def write_predictions(path: Path, probs: np.ndarray, names: list[str], files=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["file" if files is not None else "row", "predicted_label", "predicted_class"]
            + [f"p_{n}" for n in names]
        )
        for i, p in enumerate(probs):
            k = int(p.argmax())
            w.writerow(
                [files[i] if files is not None else i, k, names[k]] + [f"{v:.6g}" for v in p]
            )


@dataclass
class PredictArgs:
    """Predict with a trained run's network. --data: an .npz (its x) or a folder of images.
    Writes RUN/predictions.csv (or --out): row/file, predicted class, one probability column
    per class."""

    run: tyro.conf.Positional[Path]
    """A run folder written by noisyfit train."""
    data: Path
    """An .npz file (its x) or a folder of images."""
    out: Path | None = None
    """The CSV to write (default: RUN/predictions.csv)."""
    device: str = "cpu"


@command("predict", help="predict classes with a trained run: CSV of classes and probabilities")
def cmd_predict(argv: Sequence[str]) -> int:
    """noisyfit predict RUN --data PATH [--out FILE.csv] [--device cpu]"""
    a = parse_args(PredictArgs, argv, prog="noisyfit predict")
    net, cfg, ds = load_run_network(a.run, a.device)
    x, files = read_inputs(a.data, ds)
    probs = predict_inputs(
        net, x, mean=ds.mean, std=ds.std, normalize=cfg.normalize, device=a.device
    )
    out = a.out or a.run / "predictions.csv"
    write_predictions(out, probs, list(ds.class_names), files)
    counts = np.bincount(probs.argmax(1), minlength=ds.num_classes)
    top = ", ".join(f"{ds.class_names[k]} {counts[k]}" for k in np.argsort(-counts)[:5])
    print(f"predicted {len(probs)} inputs ({top}); wrote {out}")
    return 0
