"""In-memory data: a :class:`~noisyfit.data.base.Dataset` from numpy arrays, torch tensors or a
torch ``Dataset`` (e.g. ``TensorDataset``), for ``noisyfit.train(dataset=...)`` and
:class:`noisyfit.RobustClassifier`.

Inputs follow the ``arrays`` dataset's rules (:func:`noisyfit.data.folder.arrays`): float
(N, D) feature vectors stay float32; integer images (N, H, W), (N, C, H, W) or (N, H, W, C)
with values 0..255 become uint8 (N, C, H, W). Float images (N, C, H, W) in [0, 1] (what
torchvision's ``ToTensor`` gives) are scaled to uint8. The given labels are taken as possibly
wrong (``labels_are_true=False``); there is no test split unless one is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .base import Dataset, MalformedDataError
from .folder import _inputs, _labels

#: How an in-memory dataset is named in config.yaml and summaries.
IN_MEMORY = "in-memory"


def _to_numpy(a: Any) -> np.ndarray:
    if torch.is_tensor(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _float_images(x: np.ndarray, what: str) -> np.ndarray:
    """Float (N, C, H, W) images in [0, 1] → uint8; anything else is left to ``_inputs``."""
    if x.ndim == 4 and x.dtype.kind == "f":
        if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1):
            raise MalformedDataError(
                f"{what}: float images must lie in [0, 1] (ToTensor's range), found "
                f"{np.nanmin(x):.3g}..{np.nanmax(x):.3g}; pass uint8 images or (N, D) features"
            )
        return np.round(x * 255).astype(np.uint8)
    return x


def torch_dataset_arrays(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) numpy arrays of a torch ``Dataset`` whose items are ``(input, label)`` pairs.

    A ``TensorDataset`` is read directly; any other map-style dataset item by item.
    """
    tensors = getattr(ds, "tensors", None)
    if tensors is not None:
        if len(tensors) < 2:
            raise MalformedDataError(
                "TensorDataset: needs (inputs, labels) tensors, got one tensor; "
                "use TensorDataset(x, y)"
            )
        return _to_numpy(tensors[0]), _to_numpy(tensors[1])
    try:
        n = len(ds)
    except TypeError as e:
        raise MalformedDataError(
            f"{type(ds).__name__}: a dataset must have a length (map-style torch Dataset)"
        ) from e
    xs, ys = [], []
    for i in range(n):
        item = ds[i]
        if not isinstance(item, Sequence) or len(item) < 2:
            raise MalformedDataError(
                f"{type(ds).__name__}[{i}]: expected an (input, label) pair, got {type(item)}"
            )
        xs.append(_to_numpy(item[0]))
        ys.append(int(_to_numpy(item[1])))
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def from_arrays(
    x: Any,
    y: Any = None,
    *,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    test_x: Any = None,
    test_y: Any = None,
    name: str = IN_MEMORY,
) -> Dataset:
    """A Dataset from (x, y) arrays/tensors, or from a torch Dataset passed as ``x``.

    Args:
        x: (N, D) features, (N, [C,] H, W[, C]) images (numpy or torch), or a torch Dataset of
            (input, label) pairs (then ``y`` is None).
        y: (N,) integer labels in [0, K).
        class_names: K names (default ``class0 …``); or ``num_classes`` K.
        test_x, test_y: an optional test split (same layout).

    Returns:
        a Dataset with ``labels_are_true=False`` and ``extra["train_rows"]`` = arange(N).
    """
    if y is None:
        if isinstance(x, np.ndarray) or not hasattr(x, "__getitem__"):
            raise MalformedDataError("labels missing: pass fit(X, y) or a Dataset of (x, y) pairs")
        x, y = torch_dataset_arrays(x)
    what = f"{name} data"
    xa = _inputs(_float_images(_to_numpy(x), what), "x", what)
    ya = _labels(_to_numpy(y).reshape(-1) if _to_numpy(y).ndim == 2 else _to_numpy(y), "y", what)
    if len(xa) != len(ya):
        raise MalformedDataError(f"{what}: x has {len(xa)} rows but y has {len(ya)} labels")
    if test_x is not None:
        tx = _inputs(_float_images(_to_numpy(test_x), what), "test_x", what)
        ty = _labels(_to_numpy(test_y), "test_y", what)
    else:
        tx, ty = xa[:0], ya[:0]
    k = len(class_names) if class_names is not None else num_classes
    if k is None:
        k = int(max(ya.max(initial=-1), ty.max(initial=-1))) + 1
    names = list(class_names) if class_names is not None else [f"class{i}" for i in range(k)]
    return Dataset(
        name=name,
        x=np.ascontiguousarray(xa),
        labels=ya,
        test_x=np.ascontiguousarray(tx),
        test_labels=ty,
        class_names=[str(n) for n in names],
        labels_are_true=False,
        source=f"{len(xa)} rows given in memory",
        extra={"train_rows": np.arange(len(xa))},
    )


def as_dataset(obj: Any) -> Dataset:
    """``obj`` if it is already a noisyfit Dataset, else :func:`from_arrays` of a torch
    Dataset or an ``(x, y)`` pair."""
    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, tuple) and len(obj) == 2:
        return from_arrays(*obj)
    return from_arrays(obj)
