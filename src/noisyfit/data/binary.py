"""Reader and writer of the SELFIE binary format (CIFAR-10 binary layout with an id field).

A dataset folder holds ``data_batch_1.bin … data_batch_n.bin`` (training) and ``test_batch.bin``.
Each file is a run of fixed-length records::

    <id: 4-byte big-endian uint32><label: 4-byte big-endian uint32><C*H*W uint8 image bytes>

Image bytes are channel-major (all of channel 0 row by row, then channel 1, ...), so a record's
image reshapes directly to (C, H, W). Record length is ``8 + C*H*W`` (3 080 bytes for 3x32x32,
12 296 for 3x64x64). The ids of one split are 0 … N-1 and give each record's position; across
several data batch files they may come in any order.

Files are read through ``np.memmap`` with a structured dtype (no Python loop per record) and
scattered by id straight into one preallocated array.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .base import Dataset, DatasetNotFoundError, MalformedDataError, note_files_read

#: Bytes before the image in every record (id + label).
HEADER_BYTES = 8


def record_dtype(shape: Sequence[int]) -> np.dtype:
    """The structured dtype of one record for images of ``shape`` = (C, H, W)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise DataError(f"image shape must be (C, H, W) with positive sizes, got {shape}")
    return np.dtype([("id", ">u4"), ("label", ">u4"), ("img", "u1", shape)])


def _open_records(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The records of one file as a read-only structured memmap (an empty array if size 0)."""
    dt = record_dtype(shape)
    note_files_read(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DatasetNotFoundError(f"binary data file {path} does not exist") from None
    if size % dt.itemsize:
        raise MalformedDataError(
            f"{path}: size {size} bytes is not a multiple of the record size {dt.itemsize} "
            f"(= {HEADER_BYTES} header bytes + C*H*W = {dt.itemsize - HEADER_BYTES} image "
            f"bytes, assuming image shape (C, H, W) = {shape}); the file is truncated or the "
            f"images have another shape"
        )
    if size == 0:
        return np.zeros(0, dtype=dt)
    return np.memmap(path, dtype=dt, mode="r")


def read_binary_split(
    paths: Sequence[str | os.PathLike], shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the records of one split (one or more files) and order them by id.

    Args:
        paths: the split's files (e.g. ``data_batch_1.bin … data_batch_5.bin``), in any order.
        shape: image shape (C, H, W).

    Returns:
        ``(x, labels, ids)``: uint8 images (N, C, H, W), int64 labels (N,), and int64 ids
        (N,), which after reordering are exactly ``0 … N-1``.

    Raises:
        MalformedDataError: a file's size is not a multiple of the record size, the ids are not
            0 … N-1 (duplicates or gaps), or the split holds no record.
    """
    shape = tuple(int(s) for s in shape)
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("read_binary_split needs at least one file")
    records = [_open_records(p, shape) for p in paths]
    ids = np.concatenate([r["id"] for r in records]).astype(np.int64)
    n = len(ids)
    names = ", ".join(p.name for p in paths)
    if n == 0:
        raise MalformedDataError(f"no records in {names} ({paths[0].parent})")
    uniq, counts = np.unique(ids, return_counts=True)
    if len(uniq) != n or uniq[0] != 0 or uniq[-1] != n - 1:
        dup = uniq[counts > 1]
        missing = np.setdiff1d(np.arange(n), uniq, assume_unique=True)
        raise MalformedDataError(
            f"record ids in {names} ({paths[0].parent}) must be 0..{n - 1} (each once) for "
            f"{n} records; found range {ids.min()}..{ids.max()}, "
            f"{len(dup)} duplicated (e.g. {dup[:5].tolist()}), "
            f"{len(missing)} of 0..{n - 1} missing (e.g. {missing[:5].tolist()})"
        )
    x = np.empty((n, *shape), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for r in records:  # one vectorized scatter per file
        idx = r["id"].astype(np.int64)
        x[idx] = r["img"]
        labels[idx] = r["label"]
    return x, labels, np.arange(n, dtype=np.int64)


def data_batch_paths(folder: str | os.PathLike, n_batches: int | None = None) -> list[Path]:
    """The training files of a binary dataset folder.

    ``n_batches=None`` takes every ``data_batch_<i>.bin``, sorted by ``i``, and checks that they
    are numbered 1 … n without gaps; otherwise ``data_batch_1.bin … data_batch_<n>.bin``.
    """
    folder = Path(folder)
    if n_batches is not None:
        paths = [folder / f"data_batch_{i}.bin" for i in range(1, n_batches + 1)]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise DatasetNotFoundError(f"{folder}: missing {', '.join(missing)}")
        return paths
    found: dict[int, Path] = {}
    for p in folder.glob("data_batch_*.bin"):
        m = re.fullmatch(r"data_batch_(\d+)\.bin", p.name)
        if m and p.is_file():
            found[int(m.group(1))] = p
    if not found:
        raise DatasetNotFoundError(f"{folder}: no data_batch_<i>.bin file")
    nums = sorted(found)
    if nums != list(range(1, len(nums) + 1)):
        raise MalformedDataError(
            f"{folder}: data batch files must be numbered 1..n without gaps; found "
            f"{', '.join(found[i].name for i in nums)}"
        )
    return [found[i] for i in nums]


def read_binary_dataset(
    folder: str | os.PathLike, shape: Sequence[int], n_batches: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read a SELFIE binary dataset folder.

    Args:
        folder: holds ``data_batch_*.bin`` and ``test_batch.bin``.
        shape: image shape (C, H, W).
        n_batches: number of data batch files; None = every ``data_batch_*.bin`` found.

    Returns:
        ``(x, y, test_x, test_y)``, images uint8 (N, C, H, W) ordered by id, labels int64.
    """
    folder = Path(folder)
    train = data_batch_paths(folder, n_batches)
    test = folder / "test_batch.bin"
    if not test.is_file():
        raise DatasetNotFoundError(f"{folder}: missing test_batch.bin")
    x, y, _ = read_binary_split(train, shape)
    tx, ty, _ = read_binary_split([test], shape)
    return x, y, tx, ty


def _write_records(path: Path, x: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
    rec = np.empty(len(x), dtype=record_dtype(x.shape[1:]))
    rec["id"] = ids
    rec["label"] = labels
    rec["img"] = x
    rec.tofile(path)


def write_binary_dataset(
    dataset: Dataset, folder: str | os.PathLike, n_batches: int = 1
) -> list[Path]:
    """Write an image dataset in the SELFIE binary format.

    The training set goes to ``data_batch_1.bin … data_batch_<n_batches>.bin`` with ids
    0 … N-1 split evenly (in order) over the files; the test set to ``test_batch.bin`` with ids
    0 … M-1. Class names are not stored by the format.

    Returns:
        The files written, training files first.
    """
    if not dataset.is_image or dataset.x.dtype != np.uint8:
        raise DataError(
            f"{dataset.name}: the binary format holds uint8 images (N, C, H, W); got "
            f"{dataset.x.dtype} of shape {dataset.x.shape}"
        )
    if n_batches < 1 or n_batches > max(1, len(dataset)):
        raise ConfigError(f"n_batches must lie in [1, {len(dataset)}], got {n_batches}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    bounds = np.linspace(0, len(dataset), n_batches + 1).round().astype(np.int64)
    for i in range(n_batches):
        lo, hi = bounds[i], bounds[i + 1]
        path = folder / f"data_batch_{i + 1}.bin"
        _write_records(path, dataset.x[lo:hi], dataset.labels[lo:hi], np.arange(lo, hi))
        written.append(path)
    path = folder / "test_batch.bin"
    _write_records(path, dataset.test_x, dataset.test_labels, np.arange(len(dataset.test_x)))
    written.append(path)
    return written
