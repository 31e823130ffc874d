"""Label noise: transition matrices, seeded injection, and the manifest recorded with every run.

Convention: ``T[i, j] = P(noisy label = j | true label = i)``, a row-stochastic (K, K) matrix.

Kinds (``NOISE_KINDS``):

=============  ==============================================================================
``none``       identity: the labels are kept (real-noise datasets such as ANIMAL-10N)
``symmetric``  flip with probability r to a *different* class, uniform over the other K−1
               (SELFIE ``symmetry``, INCV ``sym``, Co-teaching ``symmetric``)
``uniform``    with probability r replace by a uniform draw over *all* K classes (IEG);
               the realized wrong-label rate is r·(K−1)/K
``pair``       flip with probability r to the next class, i → (i+1) mod K (SELFIE ``pair``,
               INCV ``asym``, Co-teaching ``pairflip``)
``asymmetric`` flip with probability r along a dataset's map of confusable classes
               (``ASYMMETRIC_MAPS``; CIFAR-100: next class within its superclass)
``matrix``     a user's (K, K) matrix from a ``.npy``/``.csv``/``.txt`` file; ``rate`` unused
``labels``     replay a file of noisy labels (e.g. human annotations), one per sample
``cifar10n-*`` CIFAR-10N human labels: ``cifar10n-aggre``, ``-rand1`` … ``-rand3``, ``-worst``
``cifar100n``  CIFAR-100N human labels (see "CIFAR-N" below)
=============  ==============================================================================

CIFAR-N (Wei et al., ICLR 2022; ``UCSC-REAL/cifar-10-100n``, licence CC BY-NC 4.0): the
released ``data/CIFAR-10_human.pt`` / ``data/CIFAR-100_human.pt`` is a dictionary of (50 000,)
label arrays in torchvision's CIFAR training order (``aggre_label``, ``random_label1..3``,
``worse_label``, ``clean_label``; ``noisy_label``, ``clean_label``). It is looked up as
``--noise-file PATH``, else in ``--data-dir``, ``$NOISYFIT_DATA`` and ``~/.cache/noisyfit`` (each
also in a ``cifar-n`` sub-folder), else downloaded from the GitHub release path into
``~/.cache/noisyfit/cifar-n/`` (``$NOISYFIT_DATA/cifar-n/`` when set); never shipped with the
package. The licence is printed whenever a file is read; the file's ``clean_label`` must equal
the dataset's labels (else the order or the dataset is wrong).

Sampling modes: ``sample`` draws each label from its row of T independently (what the papers
do; the realized rate varies around r), ``exact`` assigns, within every true class i, exactly
round(n_i·T[i, j]) samples to each class j (largest-remainder rounding), so the realized
transition equals T up to rounding.

The noise seed is separate from the training seed: the same noisy labels can be trained with
many seeds. :func:`inject_noise` returns the noisy labels with a manifest (kind, nominal and
realized rate, nominal and realized T, seed, mode, SHA-256 of the noisy labels).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data.base import DATA_ENV, cache_dir
from .errors import NoiseError
from .registry import Registry

NOISE_KINDS = Registry("noise kind")

#: Source → target class maps of the ``asymmetric`` kind, by dataset name.
ASYMMETRIC_MAPS: dict[str, dict[int, int]] = {
    # truck→automobile, bird→airplane, deer→horse, cat↔dog (IEG, F-correction)
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    # 2→7, 3→8, 5↔6, 7→1 (Patrini et al. 2017's MNIST flips)
    "mnist": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},
    # Ours (documented in docs/noise.md): T-shirt/top↔Shirt, Pullover→Coat, Sandal→Sneaker,
    # Ankle boot→Sneaker — the pairs a Fashion-MNIST classifier confuses most.
    "fashion-mnist": {0: 6, 6: 0, 2: 4, 5: 7, 9: 7},
}


# --------------------------------------------------------------------------------------------
# transition matrices


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise NoiseError(f"noise rate must lie in [0, 1]; got {rate}")


@NOISE_KINDS.register("none")
def none_matrix(num_classes: int, rate: float = 0.0, **_) -> np.ndarray:
    """Identity: keep the labels as they are."""
    return np.eye(num_classes)


@NOISE_KINDS.register("symmetric")
def symmetric_matrix(num_classes: int, rate: float, **_) -> np.ndarray:
    """T_ii = 1 − r, T_ij = r/(K−1): flip to a different class, uniformly."""
    _check_rate(rate)
    k = num_classes
    t = np.full((k, k), rate / (k - 1))
    np.fill_diagonal(t, 1.0 - rate)
    return t


@NOISE_KINDS.register("uniform")
def uniform_matrix(num_classes: int, rate: float, **_) -> np.ndarray:
    """With probability r draw from all K classes: T_ii = 1 − r + r/K, T_ij = r/K."""
    _check_rate(rate)
    k = num_classes
    return (1.0 - rate) * np.eye(k) + rate / k


@NOISE_KINDS.register("pair")
def pair_matrix(num_classes: int, rate: float, **_) -> np.ndarray:
    """T_ii = 1 − r, T_i,(i+1 mod K) = r: flip to the next class."""
    _check_rate(rate)
    k = num_classes
    t = (1.0 - rate) * np.eye(k)
    t[np.arange(k), (np.arange(k) + 1) % k] += rate
    return t


@NOISE_KINDS.register("asymmetric")
def asymmetric_matrix(
    num_classes: int,
    rate: float,
    *,
    dataset: str | None = None,
    superclass: np.ndarray | None = None,
    **_,
) -> np.ndarray:
    """Flip with probability r along the dataset's confusable-class map (see ASYMMETRIC_MAPS)."""
    _check_rate(rate)
    k = num_classes
    if superclass is not None:
        mapping = _next_in_superclass(np.asarray(superclass))
    elif dataset in ASYMMETRIC_MAPS:
        mapping = ASYMMETRIC_MAPS[dataset]
    else:
        raise NoiseError(
            f"no asymmetric class map for dataset {dataset!r}. Maps exist for "
            f"{', '.join(sorted(ASYMMETRIC_MAPS))} and datasets with superclasses (cifar100); "
            "use --noise matrix --noise-file T.npy to give your own transition matrix."
        )
    t = np.eye(k)
    for src, dst in mapping.items():
        if src < k and dst < k and src != dst:
            t[src, src] = 1.0 - rate
            t[src, dst] = rate
    return t


def _next_in_superclass(superclass: np.ndarray) -> dict[int, int]:
    """Map each class to the next class (by index, cyclically) of its superclass."""
    mapping: dict[int, int] = {}
    for s in np.unique(superclass):
        members = np.flatnonzero(superclass == s)
        for a, b in zip(members, np.roll(members, -1)):
            mapping[int(a)] = int(b)
    return mapping


@NOISE_KINDS.register("matrix")
def matrix_from_file(num_classes: int, rate: float = 0.0, *, path=None, **_) -> np.ndarray:
    """A user's (K, K) row-stochastic matrix from a .npy, .csv or whitespace .txt file."""
    if path is None:
        raise NoiseError("--noise matrix needs --noise-file PATH to a (K, K) .npy/.csv/.txt file")
    t = _load_array(path).astype(np.float64)
    if t.shape != (num_classes, num_classes):
        raise NoiseError(f"{path}: expected a ({num_classes}, {num_classes}) matrix, got {t.shape}")
    validate_transition(t, source=str(path))
    return t


@NOISE_KINDS.register("labels")
def _labels_kind(num_classes: int, rate: float = 0.0, **_) -> np.ndarray:
    """Replay a file of noisy labels (one per training sample); T is measured, not given."""
    return np.eye(num_classes)


# --------------------------------------------------------------------------------------------
# CIFAR-10N / CIFAR-100N human labels

#: noise kind → (released file, key of the noisy labels, number of classes)
CIFAR_N: dict[str, tuple[str, str, int]] = {
    "cifar10n-aggre": ("CIFAR-10_human.pt", "aggre_label", 10),
    "cifar10n-rand1": ("CIFAR-10_human.pt", "random_label1", 10),
    "cifar10n-rand2": ("CIFAR-10_human.pt", "random_label2", 10),
    "cifar10n-rand3": ("CIFAR-10_human.pt", "random_label3", 10),
    "cifar10n-worst": ("CIFAR-10_human.pt", "worse_label", 10),
    "cifar100n": ("CIFAR-100_human.pt", "noisy_label", 100),
}
CIFAR_N_URL = "https://github.com/UCSC-REAL/cifar-10-100n/raw/main/data/{file}"
CIFAR_N_LICENCE = (
    "CIFAR-10N/CIFAR-100N human labels (Wei et al., ICLR 2022, github.com/UCSC-REAL/"
    "cifar-10-100n) are licensed CC BY-NC 4.0: non-commercial use, with attribution "
    "(https://creativecommons.org/licenses/by-nc/4.0/)."
)
CIFAR_N_SIZE = 50000


def _cifar_n_kind(name: str, doc: str) -> None:
    def matrix(num_classes: int, rate: float = 0.0, **_) -> np.ndarray:
        return np.eye(num_classes)

    NOISE_KINDS.register(name, help=doc)(matrix)


for _kind, (_file, _key, _k) in CIFAR_N.items():
    _cifar_n_kind(_kind, f"CIFAR-{_k}N human labels ({_key} of {_file}); T is measured")


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` into ``dest`` (through a temporary file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dest), progress=False)


def cifar_n_search_dirs(data_dir=None) -> list[Path]:
    """Folders searched for a CIFAR-N file, in order."""
    roots = [Path(data_dir)] if data_dir else []
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    roots.append(Path.home() / ".cache" / "noisyfit")
    return [d for r in roots for d in (r, r / "cifar-n")]


def find_cifar_n_file(kind: str, data_dir=None, noise_file=None, download: bool = True) -> Path:
    """The released label file of CIFAR-N noise ``kind``: ``noise_file``, else the first found
    in :func:`cifar_n_search_dirs`, else downloaded into the cache.

    Raises:
        NoiseError: no such file and the download failed (the message says where to put it).
    """
    file = CIFAR_N[kind][0]
    if noise_file is not None:
        p = Path(noise_file)
        if not p.is_file():
            raise NoiseError(f"--noise-file {p} does not exist (expected the released {file})")
        return p
    dirs = cifar_n_search_dirs(data_dir)
    for d in dirs:
        if (d / file).is_file():
            return d / file
    dest = cache_dir() / "cifar-n" / file
    url = CIFAR_N_URL.format(file=file)
    if download:
        try:
            _download(url, dest)
            return dest
        except OSError as e:  # URLError, HTTPError and no network are OSErrors
            why = f"the download from {url} failed ({e})"
    else:
        why = "downloads are off"
    raise NoiseError(
        f"{kind}: {file} was not found in {', '.join(map(str, dirs))} and {why}. Download it "
        f"from {url} (licence CC BY-NC 4.0) into {dest}, or pass --noise-file PATH"
    )


def load_cifar_n(path: str | Path) -> dict[str, np.ndarray]:
    """The dictionary of label arrays of a released CIFAR-N ``.pt`` file, read with torch's
    ``weights_only`` loader (numpy arrays allowed, nothing else)."""
    np_core = getattr(np, "_core", None) or np.core
    rec = np_core.multiarray._reconstruct
    allowed: list = [rec, (rec, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype]
    allowed += [
        getattr(np.dtypes, n) for n in dir(getattr(np, "dtypes", object)) if n.endswith("DType")
    ]
    p = Path(path)
    try:
        with torch.serialization.safe_globals(allowed):
            d = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (pickle errors have many types)
        raise NoiseError(
            f"{p}: not a CIFAR-N label file readable without arbitrary code ({e}); expected "
            "the released .pt dictionary of label arrays"
        ) from e
    if not isinstance(d, dict):
        raise NoiseError(f"{p}: expected a dictionary of label arrays, got {type(d).__name__}")
    return {str(k): np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in d.items()}


def cifar_n_labels(
    kind: str,
    *,
    num_classes: int,
    true_labels: np.ndarray | None,
    source_index: np.ndarray | None,
    data_dir=None,
    noise_file=None,
    log=print,
) -> tuple[np.ndarray, Path]:
    """(noisy labels of the training rows ``source_index``, the file read) for CIFAR-N
    noise ``kind``; the licence is printed; the file's ``clean_label`` is checked against
    ``true_labels``."""
    file, key, k = CIFAR_N[kind]
    if num_classes != k:
        raise NoiseError(
            f"--noise {kind} is for CIFAR-{k} (K = {k}); this dataset has K = {num_classes}"
        )
    path = find_cifar_n_file(kind, data_dir, noise_file)
    d = load_cifar_n(path)
    for need in (key, "clean_label"):
        if need not in d:
            raise NoiseError(f"{path}: no array {need!r} (has {', '.join(sorted(d))})")
    noisy_all = d[key].astype(np.int64).reshape(-1)
    clean_all = d["clean_label"].astype(np.int64).reshape(-1)
    if len(noisy_all) != CIFAR_N_SIZE or len(clean_all) != CIFAR_N_SIZE:
        raise NoiseError(
            f"{path}: {key} has {len(noisy_all)} labels; CIFAR-N has {CIFAR_N_SIZE} (one per "
            "CIFAR training image)"
        )
    if noisy_all.min() < 0 or noisy_all.max() >= k:
        raise NoiseError(f"{path}: {key} must lie in [0, {k - 1}]")
    idx = np.arange(CIFAR_N_SIZE) if source_index is None else np.asarray(source_index)
    if true_labels is not None:
        if idx.max(initial=-1) >= CIFAR_N_SIZE or len(idx) != len(true_labels):
            raise NoiseError(
                f"--noise {kind} needs the CIFAR-{k} training split ({CIFAR_N_SIZE} images)"
            )
        if not np.array_equal(clean_all[idx], np.asarray(true_labels)):
            bad = int((clean_all[idx] != np.asarray(true_labels)).sum())
            raise NoiseError(
                f"{path}: clean_label differs from the dataset's labels on {bad} images: the "
                f"file is not in torchvision's CIFAR-{k} training order, or the dataset is not "
                f"CIFAR-{k}"
            )
    if log:
        log(CIFAR_N_LICENCE)
    return noisy_all[idx], path


def transition_matrix(kind: str, num_classes: int, rate: float = 0.0, **kw) -> np.ndarray:
    """The nominal (K, K) transition matrix of noise ``kind`` at ``rate``."""
    if num_classes < 2:
        raise NoiseError(f"noise needs at least 2 classes; got {num_classes}")
    return NOISE_KINDS.get(kind)(num_classes, rate, **kw)


def validate_transition(t: np.ndarray, source: str = "T") -> None:
    """Raise NoiseError unless ``t`` is square, non-negative and row-stochastic."""
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise NoiseError(f"{source}: a transition matrix must be square; got shape {t.shape}")
    if (t < 0).any():
        raise NoiseError(f"{source}: a transition matrix has no negative entries")
    rows = t.sum(1)
    if not np.allclose(rows, 1.0, atol=1e-6):
        bad = int(np.argmax(np.abs(rows - 1)))
        raise NoiseError(f"{source}: row {bad} sums to {rows[bad]:.6f}; every row must sum to 1")


def _load_array(path) -> np.ndarray:
    """A numeric array from .npy, .csv or whitespace text; any unreadable file → NoiseError."""
    p = Path(path)
    if not p.is_file():
        raise NoiseError(f"noise file {p} does not exist")
    try:
        if p.suffix == ".npy":
            a = np.load(p, allow_pickle=False)
        else:
            delim = "," if p.suffix == ".csv" else None
            a = np.loadtxt(p, delimiter=delim, ndmin=1)
    except Exception as e:  # noqa: BLE001  (truncated .npy, text that is not numbers, ...)
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise NoiseError(
            f"{p}: cannot read numbers ({msg}); write a .npy array, or text with one number "
            "per cell (.csv: comma-separated)"
        ) from None
    if a.dtype.kind not in "iuf" and a.dtype != bool:
        raise NoiseError(f"{p}: expected numbers, got an array of dtype {a.dtype}")
    return a


def read_label_file(path, what: str = "labels") -> np.ndarray:
    """(N,) int64 class ids from a file of one integer per sample.

    A 2-D array, a non-integer value (1.63), NaN or inf is refused (NoiseError naming the first
    bad entry), never truncated or flattened; an (N, 1) column is accepted.
    """
    a = _load_array(path)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise NoiseError(
            f"{path}: {what} must be a 1-D array (one per sample), got shape {a.shape}; "
            "write one value per line"
        )
    if a.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(a) | (a != np.round(a)))
        if len(bad):
            i = int(bad[0])
            raise NoiseError(
                f"{path}: {what} must be integers; entry {i} is {a[i]!r} "
                f"({len(bad)} non-integer entries); write integer class ids"
            )
    return a.astype(np.int64)


def read_index_file(path, what: str = "indices") -> np.ndarray:
    """(M,) int64 indices from a .npy or text file (as :func:`read_label_file`)."""
    return read_label_file(path, what)


# --------------------------------------------------------------------------------------------
# sampling


def sample_from_rows(
    true_labels: np.ndarray, t: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw each noisy label independently from row ``t[true_label]`` (vectorized)."""
    cum = np.cumsum(t, axis=1)
    cum[:, -1] = 1.0  # guard against rounding so every draw lands in a class
    u = rng.random(len(true_labels))
    return (cum[true_labels] <= u[:, None]).sum(1).astype(np.int64)


def sample_exact(true_labels: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Within each true class i assign exactly round(n_i·t[i, j]) samples to class j.

    Counts use largest-remainder rounding so they sum to n_i; which samples get which label is
    a seeded random permutation.
    """
    noisy = true_labels.astype(np.int64).copy()
    for i in np.unique(true_labels):
        idx = np.flatnonzero(true_labels == i)
        n = len(idx)
        want = t[i] * n
        counts = np.floor(want).astype(np.int64)
        short = n - counts.sum()
        if short > 0:
            # largest remainders first; ties broken towards the diagonal, then by class index
            rem = want - counts
            order = np.lexsort((np.arange(len(rem)), np.arange(len(rem)) != i, -rem))
            counts[order[:short]] += 1
        perm = rng.permutation(idx)
        noisy[perm] = np.repeat(np.arange(len(counts)), counts)
    return noisy


# --------------------------------------------------------------------------------------------
# injection and manifest


@dataclass
class NoiseManifest:
    """What a noise injection did, saved as ``noise.json`` in every run folder.

    ``realized_T`` is the row-normalized count matrix of (true, noisy) pairs; it and
    ``realized_rate`` are None when no true labels exist.
    """

    kind: str
    nominal_rate: float
    realized_rate: float | None
    mode: str
    seed: int
    num_samples: int
    num_classes: int
    nominal_T: list[list[float]]
    realized_T: list[list[float]] | None
    sha256: str
    source_file: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NoisyLabels:
    """The result of :func:`inject_noise`: ``labels`` (N,) int64 and their ``manifest``."""

    labels: np.ndarray
    manifest: NoiseManifest


def labels_sha256(labels: np.ndarray) -> str:
    """SHA-256 of labels as little-endian int64 bytes (the same labels give the same hash)."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


def realized_transition(true_labels: np.ndarray, noisy: np.ndarray, k: int) -> np.ndarray:
    """Row-normalized (K, K) counts of (true, noisy) pairs (rows with no samples stay 0)."""
    counts = np.bincount(true_labels * k + noisy, minlength=k * k).reshape(k, k).astype(float)
    rows = counts.sum(1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)


def inject_noise(
    true_labels: np.ndarray | None,
    kind: str = "symmetric",
    rate: float = 0.0,
    *,
    num_classes: int,
    seed: int = 0,
    mode: str = "sample",
    dataset: str | None = None,
    superclass: np.ndarray | None = None,
    noise_file: str | Path | None = None,
    given_labels: np.ndarray | None = None,
    source_index: np.ndarray | None = None,
    data_dir: str | Path | None = None,
) -> NoisyLabels:
    """Corrupt ``true_labels`` with noise ``kind`` at ``rate``; return labels and manifest.

    Args:
        true_labels: (N,) int labels in [0, K), or None when no truth exists (then only
            ``none`` and ``labels`` are possible and ``given_labels`` are used).
        kind: a name in ``NOISE_KINDS``.
        rate: nominal noise rate r in [0, 1] (unused by ``none``, ``matrix``, ``labels``).
        num_classes: K.
        seed: the noise seed (separate from any training seed).
        mode: ``"sample"`` (per sample from T's row) or ``"exact"`` (exact counts per class).
        dataset: dataset name, for ``asymmetric`` maps.
        superclass: (K,) coarse class per class, for ``asymmetric`` on CIFAR-100.
        noise_file: the matrix (``matrix``) or the noisy labels (``labels``).
        given_labels: the labels a real-noise dataset ships with (used when true_labels is None).
        source_index: (N,) position of each training sample in the dataset's full training
            split (CIFAR-N kinds: the rows of the released file to take; None: all).
        data_dir: searched first for a CIFAR-N file.

    Returns:
        NoisyLabels with ``labels`` (N,) int64 and a ``manifest``.
    """
    if mode not in ("sample", "exact"):
        raise NoiseError(f"noise mode must be 'sample' or 'exact'; got {mode!r}")
    k = num_classes
    NOISE_KINDS.get(kind)  # unknown kind → error listing the valid kinds
    if true_labels is None:
        if kind not in ("none", "labels") and kind not in CIFAR_N:
            raise NoiseError(
                f"this dataset's labels are not ground truth (real noise), so synthetic noise "
                f"{kind!r} cannot be measured against a truth; use --noise none (or labels)."
            )
        if given_labels is None and kind == "none":
            raise NoiseError("no labels given")
    else:
        true_labels = np.asarray(true_labels, dtype=np.int64)
    n = len(true_labels) if true_labels is not None else len(given_labels)
    t = transition_matrix(kind, k, rate, dataset=dataset, superclass=superclass, path=noise_file)
    notes = check_learnable(t, kind, rate)
    rng = np.random.default_rng(seed)
    if kind in CIFAR_N:
        want = f"cifar{CIFAR_N[kind][2]}"
        if dataset is not None and dataset != want:
            raise NoiseError(
                f"--noise {kind} holds human labels of {want}'s training images; this run's "
                f"dataset is {dataset}. Use --dataset {want}"
            )
        noisy, path = cifar_n_labels(
            kind,
            num_classes=k,
            true_labels=true_labels,
            source_index=source_index,
            data_dir=data_dir,
            noise_file=noise_file,
        )
        noise_file = path
    elif kind == "labels":
        if noise_file is None:
            raise NoiseError("--noise labels needs --noise-file PATH with one label per sample")
        noisy = read_label_file(noise_file, "noisy labels")
        if len(noisy) != n:
            raise NoiseError(f"{noise_file}: {len(noisy)} labels for {n} training samples")
        if n and (noisy.min() < 0 or noisy.max() >= k):
            raise NoiseError(f"{noise_file}: labels must lie in [0, {k - 1}]")
    elif true_labels is None:
        noisy = np.asarray(given_labels, dtype=np.int64).copy()
    else:
        sampler: Callable = sample_exact if mode == "exact" else sample_from_rows
        noisy = sampler(true_labels, t, rng)
    realized_t = realized_rate = None
    if true_labels is not None:
        realized_rate = float((noisy != true_labels).mean()) if n else 0.0
        realized_t = realized_transition(true_labels, noisy, k)
    manifest = NoiseManifest(
        kind=kind,
        nominal_rate=float(rate),
        realized_rate=realized_rate,
        mode=mode,
        seed=int(seed),
        num_samples=int(n),
        num_classes=int(k),
        nominal_T=np.round(t, 10).tolist(),
        realized_T=None if realized_t is None else np.round(realized_t, 10).tolist(),
        sha256=labels_sha256(noisy),
        source_file=str(noise_file) if noise_file else None,
        warnings=notes,
    )
    return NoisyLabels(labels=noisy, manifest=manifest)


class NoiseWarning(UserWarning):
    """Noise under which the given label is no longer the most likely one for some class."""


def check_learnable(t: np.ndarray, kind: str, rate: float) -> list[str]:
    """Warn (visibly, and returned to be recorded in ``noise.json``) where the true class is
    not the most likely label of its row of T, e.g. symmetric noise 1.0 (every label wrong)."""
    if kind in ("none", "labels"):
        return []
    diag = np.diag(t)
    off = np.where(np.eye(len(t), dtype=bool), -np.inf, t).max(1)
    bad = np.flatnonzero(diag <= off + 1e-12)
    if not len(bad):
        return []
    if np.all(diag <= 0):
        msg = (
            f"{kind} noise at rate {rate:g} makes every label wrong (T_ii = 0 for every class): "
            "a network trained on these labels learns the wrong classes; use a lower rate "
            "unless this is deliberate"
        )
    else:
        msg = (
            f"{kind} noise at rate {rate:g}: for class(es) {bad[:10].tolist()} the true label "
            f"is no more likely than a wrong one (T_ii {diag[bad[0]]:.3g} ≤ {off[bad[0]]:.3g}), "
            "so no method can tell which is right; the papers stay below this rate"
        )
    warnings.warn(msg, NoiseWarning, stacklevel=3)
    return [msg]


def expected_noise_rate(kind: str, rate: float, num_classes: int, **kw) -> float:
    """The expected wrong-label fraction under balanced classes: 1 − mean_i T_ii."""
    t = transition_matrix(kind, num_classes, rate, **kw)
    return float(1.0 - np.diag(t).mean())
