"""The dataset record every builder returns, the dataset registry and the data-folder lookup.

Vocabulary (as cleanlab's): ``N`` training samples, ``K`` classes, ``labels`` the labels a
dataset ships with. For synthetic-noise experiments the shipped labels are the truth
(``labels_are_true=True``) and noise is injected afterwards; for real-noise datasets
(ANIMAL-10N, WebVision, a user's own folder) they are the given, possibly wrong, labels and no
truth exists (``labels_are_true=False``).
"""

from __future__ import annotations

import contextvars
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, DataWarning, NoisyfitError
from ..registry import Registry

DATASETS = Registry("dataset", builtin="noisyfit.data._builtin")

#: Environment variable naming a folder that holds one sub-folder per dataset.
DATA_ENV = "NOISYFIT_DATA"


class DatasetNotFoundError(NoisyfitError, FileNotFoundError):
    """A dataset's files were not found; the message says where we looked and how to get them."""


class MalformedDataError(DataError):
    """A data file exists but is truncated or not in the expected format."""


@dataclass
class Dataset:
    """A labelled image (or feature) dataset with its test split, held in host memory.

    Attributes:
        name: registry name.
        x: training inputs, ``uint8`` of shape (N, C, H, W) for images, or ``float32`` of shape
            (N, D) for feature vectors.
        labels: (N,) int64 labels as shipped.
        test_x, test_labels: the test split, same layout; ``test_labels`` are taken as clean.
        class_names: K names.
        labels_are_true: True when ``labels`` are ground truth (noise is then injected on top).
        superclass: optional (K,) int64 coarse class of each class (CIFAR-100), used by the
            ``asymmetric`` noise kind.
        mean, std: per-channel statistics of ``x`` scaled to [0, 1] (images) used to normalize.
        source: a short note on where the files came from.
    """

    name: str
    x: np.ndarray
    labels: np.ndarray
    test_x: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    labels_are_true: bool = True
    superclass: np.ndarray | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.test_labels = np.asarray(self.test_labels, dtype=np.int64)
        if len(self.x) != len(self.labels):
            raise MalformedDataError(
                f"{self.name}: {len(self.x)} training inputs but {len(self.labels)} labels"
            )
        if len(self.test_x) != len(self.test_labels):
            raise MalformedDataError(
                f"{self.name}: {len(self.test_x)} test inputs but {len(self.test_labels)} labels"
            )
        k = self.num_classes
        for what, arr in (("training", self.labels), ("test", self.test_labels)):
            if len(arr) and (arr.min() < 0 or arr.max() >= k):
                raise MalformedDataError(
                    f"{self.name}: {what} labels must lie in [0, {k - 1}] for {k} classes; "
                    f"found {arr.min()}..{arr.max()}"
                )
        if self.mean is None or self.std is None:
            self.mean, self.std = channel_stats(self.x)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) for images, (D,) for feature vectors."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, N={len(self)}, test={len(self.test_x)}, "
            f"input={self.input_shape}, K={self.num_classes}, "
            f"labels_are_true={self.labels_are_true})"
        )


def channel_stats(x: np.ndarray, max_samples: int = 10000) -> tuple[tuple, tuple]:
    """Per-channel mean and std of images scaled to [0, 1] (per-feature for vectors).

    Uses at most ``max_samples`` evenly spaced samples so large datasets stay cheap.
    """
    if len(x) == 0:
        raise MalformedDataError("the dataset is empty")
    step = max(1, len(x) // max_samples)
    sub = np.asarray(x[::step], dtype=np.float64)
    if x.ndim == 4:
        sub = sub / 255.0 if x.dtype == np.uint8 else sub
        mean = sub.mean(axis=(0, 2, 3))
        std = sub.std(axis=(0, 2, 3))
    else:
        mean = sub.mean(axis=0)
        std = sub.std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def candidate_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """Folders searched for dataset ``name``, in order.

    ``--data-dir`` (its ``name`` sub-folder and itself) and nothing else when it is given (a
    missing or incomplete ``--data-dir`` is an error, not a silent fall-back to the system
    copy); otherwise ``$NOISYFIT_DATA/name``, ``/usr/share/datasets/name`` (Debian's dataset
    packages), ``~/.cache/noisyfit/name``.
    """
    out: list[Path] = []
    if data_dir is not None:  # only there: never fall back silently to another copy
        return [Path(data_dir) / name, Path(data_dir)]
    if os.environ.get(DATA_ENV):
        out.append(Path(os.environ[DATA_ENV]) / name)
    out += [Path("/usr/share/datasets") / name, cache_dir() / name]
    return list(dict.fromkeys(out))  # without repeats, in order


def cache_dir() -> Path:
    """Where downloads go: ``$NOISYFIT_DATA`` if set, else ``~/.cache/noisyfit``."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path.home() / ".cache" / "noisyfit"


def find_files(
    name: str, data_dir: str | os.PathLike | None, required: Sequence[str], how_to_get: str
) -> Path:
    """The first candidate folder that holds every file in ``required``.

    Raises:
        DatasetNotFoundError: naming every folder searched and how to obtain the data.
    """
    dirs = candidate_dirs(name, data_dir)
    for d in dirs:
        if all((d / f).is_file() for f in required):
            return d
    looked = "\n  ".join(str(d) for d in dirs)
    raise DatasetNotFoundError(
        f"dataset {name!r} not found: no folder holds {', '.join(required)}.\n"
        f"Looked in:\n  {looked}\nTo get it: {how_to_get}"
    )


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, **options) -> Dataset:
    """Build the registered dataset ``name`` (see ``noisyfit list datasets``).

    Args:
        name: registry name, e.g. ``"fashion-mnist"``.
        data_dir: a folder to search first (for ``imagefolder`` and ``arrays``: the folder or
            ``.npz`` file itself).
        **options: builder-specific options (e.g. ``download=True``).
    """
    builder = DATASETS.get(name)
    record: dict[str, list] = {"files": [], "warnings": []}
    token = _READ_LOG.set(record)
    try:
        ds = builder(data_dir, **options)
    finally:
        _READ_LOG.reset(token)
    ds.extra.setdefault("files_read", list(dict.fromkeys(str(f) for f in record["files"])))
    ds.extra.setdefault("warnings", []).extend(record["warnings"])
    return ds


_READ_LOG: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "noisyfit_read_log", default=None
)


def note_files_read(*paths: str | os.PathLike) -> None:
    """Readers call this with each data file they read; :func:`load_dataset` collects them as
    ``extra["files_read"]`` (recorded with their SHA-256 in a run's ``data_source.json``)."""
    log = _READ_LOG.get()
    if log is not None:
        log["files"].extend(Path(p) for p in paths)


def data_warning(message: str) -> None:
    """A visible warning about the data, also kept in the dataset's ``extra["warnings"]``
    (recorded in a run's ``data_source.json``)."""
    log = _READ_LOG.get()
    if log is not None:
        log["warnings"].append(message)
    warnings.warn(message, DataWarning, stacklevel=3)


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a seeded subset of ``n`` samples with the class proportions of ``labels``."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    # interleave classes in order of their random rank, then take the first n
    ranks = np.empty(len(labels))
    for c in np.unique(labels):
        members = order[labels[order] == c]
        ranks[members] = (np.arange(len(members)) + rng.random()) / len(members)
    return np.sort(np.argsort(ranks, kind="stable")[:n])
