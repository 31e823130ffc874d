"""MNIST and Fashion-MNIST from their four idx files (``.gz`` or uncompressed).

The idx format: a 4-byte magic number ``0x0000TTDD`` (TT the element type, 0x08 = uint8; DD the
number of dimensions), then DD big-endian uint32 sizes, then the elements, row-major.
Images are ``0x00000803`` (N, 28, 28); labels ``0x00000801`` (N,).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd

from ..errors import MissingFileError
from .base import (
    DATASETS,
    Dataset,
    DatasetNotFoundError,
    MalformedDataError,
    cache_dir,
    find_files,
    note_files_read,
)

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
MNIST_CLASSES = [str(i) for i in range(10)]

_FILE_LIST = ", ".join(FILES)

HOW_TO = {
    "fashion-mnist": (
        "on Debian/Ubuntu `sudo apt-get install dataset-fashion-mnist` (installs to "
        "/usr/share/datasets/fashion-mnist); or put the four idx files "
        f"({_FILE_LIST}, from the Fashion-MNIST release) in a folder and pass it with --data-dir "
        "(or $NOISYFIT_DATA/fashion-mnist); or allow the network download (download=True) "
        "through torchvision."
    ),
    "mnist": (
        f"put the four idx files ({_FILE_LIST}, from the MNIST release) in a folder and pass it "
        "with --data-dir (or $NOISYFIT_DATA/mnist, or /usr/share/datasets/mnist); or allow the "
        "network download (download=True) through torchvision."
    ),
}


def read_idx(path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """Parse one idx file (gzip-compressed if its name ends in ``.gz``) into a uint8 array.

    Args:
        path: the file.
        magic: the expected magic number (e.g. ``IDX_IMAGES_MAGIC``); None accepts any uint8
            idx file.

    Raises:
        MalformedDataError: naming the file, for a wrong magic number, a non-uint8 element type
            or a size that does not match the header.
    """
    path = Path(path)
    note_files_read(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise MalformedDataError(f"{path}: cannot read idx file ({e})") from e
    if len(raw) < 4:
        raise MalformedDataError(f"{path}: {len(raw)} bytes, too short for an idx header")
    found = int.from_bytes(raw[:4], "big")
    if magic is not None and found != magic:
        raise MalformedDataError(
            f"{path}: idx magic number 0x{found:08x}, expected 0x{magic:08x} "
            f"({'images' if magic == IDX_IMAGES_MAGIC else 'labels'})"
        )
    if found >> 16 != 0 or (found >> 8) & 0xFF != 0x08:
        raise MalformedDataError(
            f"{path}: idx magic number 0x{found:08x} is not an unsigned-byte idx file"
        )
    ndim = found & 0xFF
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise MalformedDataError(f"{path}: truncated idx header ({len(raw)} bytes, {ndim} dims)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise MalformedDataError(
            f"{path}: {len(raw)} bytes (uncompressed) but the header's dims {dims} need "
            f"{expected}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_split(images: Path, labels: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images, IDX_IMAGES_MAGIC)
    y = read_idx(labels, IDX_LABELS_MAGIC)
    if x.ndim != 3:
        raise MalformedDataError(f"{images}: expected (N, H, W) images, header says {x.shape}")
    if y.ndim != 1:
        raise MalformedDataError(f"{labels}: expected (N,) labels, header says {y.shape}")
    if len(x) != len(y):
        raise MalformedDataError(f"{images} holds {len(x)} images but {labels} {len(y)} labels")
    if len(y) and y.max() >= num_classes:
        raise MalformedDataError(f"{labels}: label {y.max()} >= {num_classes} classes")
    return x[:, None, :, :].copy(), y.astype(np.int64)


def _resolve(folder: Path) -> list[Path]:
    """The four files in ``folder``, each ``.gz`` if present, else uncompressed."""
    out = []
    for f in FILES:
        gz = folder / f
        out.append(gz if gz.is_file() else folder / f[: -len(".gz")])
    return out


def _locate(name: str, data_dir, download: bool) -> tuple[Path, str]:
    """The folder holding the four files (searching, then downloading); and a source note."""
    try:
        return find_files(name, data_dir, FILES, HOW_TO[name]), "idx files"
    except DatasetNotFoundError as e:
        not_found = e
    try:  # the same files uncompressed
        return find_files(name, data_dir, [f[: -len(".gz")] for f in FILES], HOW_TO[name]), (
            "idx files"
        )
    except DatasetNotFoundError:
        pass
    if not download or data_dir is not None:  # --data-dir: that copy or an error
        raise not_found
    root = cache_dir() / name / "tv"
    try:
        cls = tvd.FashionMNIST if name == "fashion-mnist" else tvd.MNIST
        ds = cls(root=str(root), train=True, download=True)
        raw = Path(ds.raw_folder)
        missing = [p.name for p in _resolve(raw) if not p.is_file()]
        if missing:
            raise MissingFileError(f"{raw} lacks {', '.join(missing)} after the download")
        return raw, "downloaded through torchvision"
    except Exception as err:  # no network, a changed torchvision layout, ...
        raise DatasetNotFoundError(
            f"{not_found}\n(The download into {root} failed too: {type(err).__name__}: {err})"
        ) from err


def _build(name: str, classes: list[str], data_dir, download: bool) -> Dataset:
    folder, how = _locate(name, data_dir, download)
    tr_img, tr_lab, te_img, te_lab = _resolve(folder)
    x, y = _read_split(tr_img, tr_lab, len(classes))
    tx, ty = _read_split(te_img, te_lab, len(classes))
    if x.shape[1:] != tx.shape[1:]:
        raise MalformedDataError(
            f"{folder}: training images are {x.shape[2:]} but test images {tx.shape[2:]}"
        )
    return Dataset(
        name=name,
        x=x,
        labels=y,
        test_x=tx,
        test_labels=ty,
        class_names=list(classes),
        labels_are_true=True,
        source=f"{how} in {folder}",
    )


@DATASETS.register("fashion-mnist")
def fashion_mnist(data_dir=None, *, download: bool = True, **_) -> Dataset:
    """Fashion-MNIST: 60 000 / 10 000 grayscale 28x28 clothing images, 10 classes."""
    return _build("fashion-mnist", FASHION_MNIST_CLASSES, data_dir, download)


@DATASETS.register("mnist")
def mnist(data_dir=None, *, download: bool = True, **_) -> Dataset:
    """MNIST: 60 000 / 10 000 grayscale 28x28 handwritten digits, 10 classes."""
    return _build("mnist", MNIST_CLASSES, data_dir, download)
