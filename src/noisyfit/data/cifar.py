"""CIFAR-10, CIFAR-100, Tiny-ImageNet and ANIMAL-10N.

CIFAR-10/100 are read from either

* the standard python release: ``cifar-10-batches-py/{data_batch_1..5, test_batch,
  batches.meta}`` or ``cifar-100-python/{train, test, meta}`` (pickled dicts; the folder itself
  or its parent may be the data folder), downloaded through torchvision when missing; or
* the SELFIE binary release (``data_batch_*.bin`` + ``test_batch.bin``, see
  :mod:`noisyfit.data.binary`).

Tiny-ImageNet (64x64, 200 classes, 4 data batches) and ANIMAL-10N (64x64, 10 classes, 1 data
batch) are read from the SELFIE binary release only.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd

try:
    from numpy._core import multiarray
except ImportError:  # numpy < 2
    from numpy.core import multiarray

from .base import (
    DATASETS,
    Dataset,
    DatasetNotFoundError,
    MalformedDataError,
    cache_dir,
    candidate_dirs,
    data_warning,
    note_files_read,
)
from .binary import data_batch_paths, read_binary_split

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]

#: The 20 CIFAR-100 superclasses (coarse labels 0..19, in the release's order) and their five
#: classes each, as listed by the CIFAR-100 release (names as in its ``meta`` file).
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
CIFAR100_COARSE_CLASSES = list(CIFAR100_SUPERCLASSES)
#: The 100 fine classes in label order (the release orders them alphabetically).
CIFAR100_CLASSES = sorted(n for fines in CIFAR100_SUPERCLASSES.values() for n in fines)
#: (100,) coarse label of each fine label.
CIFAR100_SUPERCLASS = np.array(
    [
        next(c for c, fines in enumerate(CIFAR100_SUPERCLASSES.values()) if name in fines)
        for name in CIFAR100_CLASSES
    ],
    dtype=np.int64,
)

ANIMAL10N_CLASSES = [
    "cat",
    "lynx",
    "wolf",
    "coyote",
    "cheetah",
    "jaguar",
    "chimpanzee",
    "orangutan",
    "hamster",
    "guinea pig",
]

_BINARY_FILES = ("data_batch_1.bin", "test_batch.bin")
_PY10 = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
)
_PY100 = ("train", "test", "meta")


def _binary_how_to(name: str, n_batches: int, shape: tuple[int, int, int], extra: str) -> str:
    c, h, w = shape
    batches = "data_batch_1.bin" + (f" ... data_batch_{n_batches}.bin" if n_batches > 1 else "")
    return (
        f"put the SELFIE binary release of {name} ({batches} and test_batch.bin; "
        f"records <id uint32 BE><label uint32 BE>"
        f"<{c}x{h}x{w} uint8 bytes, channel-major>) in one of the folders above, e.g. "
        f"$NOISYFIT_DATA/{name}, or pass its folder with --data-dir; or write such files from "
        f"another copy of the data with `noisyfit convert`. {extra}"
    ).strip()


def _find_layout(
    name: str, data_dir, layouts: dict[str, Sequence[str]], how_to: str
) -> tuple[Path, str]:
    """The first candidate folder holding all files of one of ``layouts``, and that layout.

    Folders are tried in :func:`candidate_dirs` order; within a folder, layouts in dict order.
    """
    dirs = candidate_dirs(name, data_dir)
    for d in dirs:
        for layout, files in layouts.items():
            if all((d / f).is_file() for f in files):
                return d, layout
    looked = "\n  ".join(str(d) for d in dirs)
    wanted = "\n  ".join(f"{k}: {', '.join(v)}" for k, v in layouts.items())
    raise DatasetNotFoundError(
        f"dataset {name!r} not found: no folder holds the files of any known layout:\n  {wanted}"
        f"\nLooked in:\n  {looked}\nTo get it: {how_to}"
    )


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of ``bytes`` use it (latin-1 only)."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode({encoding!r}) is not allowed")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    """What the python release's pickles may name: numpy's array reconstruction path (and
    scalars, dtypes), and latin-1 bytes; dicts, lists, bytes and str need no global."""
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    return allowed


class _ReleaseUnpickler(pickle.Unpickler):
    """An unpickler that admits only what the CIFAR python release holds (dicts, lists, bytes,
    str, numpy arrays): any other global (a function, a class) is refused, so a crafted file
    cannot run code."""

    _allowed = None

    def find_class(self, module: str, name: str):
        if _ReleaseUnpickler._allowed is None:
            _ReleaseUnpickler._allowed = _allowed_globals()
        try:
            return _ReleaseUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{module}.{name} is not part of the CIFAR python format (refused)"
            ) from None


def _unpickle(path: Path) -> dict:
    note_files_read(path)
    try:
        with open(path, "rb") as f:
            d = _ReleaseUnpickler(f, encoding="bytes").load()
    except Exception as e:  # truncated, not a pickle, a refused global, ...
        raise MalformedDataError(
            f"{path}: cannot unpickle ({type(e).__name__}: {e}); get the python release again"
        ) from e
    if not isinstance(d, dict):
        raise MalformedDataError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    # keys are bytes in the python-2 pickles; accept str keys too
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


#: (training, test) records of each release, to notice a file cut at a record boundary.
RELEASE_COUNTS = {
    "cifar10": (50000, 10000),
    "cifar100": (50000, 10000),
    "tiny-imagenet": (100000, 10000),
    "animal-10n": (50000, 5000),
}


def _check_counts(name: str, folder: Path, n_train: int, n_test: int) -> None:
    """A recorded, visible warning where the split sizes differ from the release's."""
    want = RELEASE_COUNTS.get(name)
    if want and (n_train, n_test) != want:
        data_warning(
            f"{name}: {folder} holds {n_train} training and {n_test} test records; the release "
            f"has {want[0]} and {want[1]}. A file may have been cut short; copy the data again "
            "unless this is a deliberate subset"
        )


def _get(d: dict, key: str, path: Path):
    if key not in d:
        raise MalformedDataError(f"{path}: no {key!r} entry (has {sorted(d)})")
    return d[key]


def _py_batch(path: Path, label_keys: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Images (n, 3, 32, 32) and the listed label arrays of one pickled batch."""
    d = _unpickle(path)
    data = np.asarray(_get(d, "data", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise MalformedDataError(
            f"{path}: 'data' must be uint8 of shape (n, 3072), got {data.dtype} {data.shape}"
        )
    labels = []
    for key in label_keys:
        y = np.asarray(_get(d, key, path), dtype=np.int64)
        if y.shape != (len(data),):
            raise MalformedDataError(f"{path}: {len(data)} images but {key!r} has {y.shape}")
        labels.append(y)
    return data.reshape(-1, 3, 32, 32), labels


def _names(d: dict, key: str, path: Path) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in _get(d, key, path)]


def _read_cifar10_py(folder: Path) -> tuple[np.ndarray, ...]:
    parts = [_py_batch(folder / f"data_batch_{i}", ["labels"]) for i in range(1, 6)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1][0] for p in parts])
    tx, (ty,) = _py_batch(folder / "test_batch", ["labels"])
    names = _names(_unpickle(folder / "batches.meta"), "label_names", folder / "batches.meta")
    return x, y, tx, ty, names


def _read_cifar100_py(folder: Path) -> tuple:
    x, (y, yc) = _py_batch(folder / "train", ["fine_labels", "coarse_labels"])
    tx, (ty, tyc) = _py_batch(folder / "test", ["fine_labels", "coarse_labels"])
    meta = _unpickle(folder / "meta")
    names = _names(meta, "fine_label_names", folder / "meta")
    sup = superclass_from_labels(
        np.concatenate([y, ty]), np.concatenate([yc, tyc]), len(names), where=folder
    )
    return x, y, tx, ty, names, sup


def superclass_from_labels(
    fine: np.ndarray, coarse: np.ndarray, num_classes: int, where: object = ""
) -> np.ndarray:
    """(K,) coarse class of each fine class, read off paired fine/coarse labels.

    A fine class with no sample takes its entry from :data:`CIFAR100_SUPERCLASS` (K = 100).

    Raises:
        MalformedDataError: a fine class paired with two coarse classes.
    """
    fine = np.asarray(fine, dtype=np.int64)
    coarse = np.asarray(coarse, dtype=np.int64)
    sup = np.full(num_classes, -1, dtype=np.int64)
    pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
    k, counts = np.unique(pairs[:, 0], return_counts=True)
    if (counts > 1).any():
        bad = int(k[counts > 1][0])
        raise MalformedDataError(
            f"{where}: fine class {bad} appears with coarse classes "
            f"{pairs[pairs[:, 0] == bad, 1].tolist()}; expected one each"
        )
    if len(k) and (k.min() < 0 or k.max() >= num_classes):
        raise MalformedDataError(f"{where}: fine labels outside [0, {num_classes - 1}]")
    sup[pairs[:, 0]] = pairs[:, 1]
    missing = sup < 0
    if missing.any():
        if num_classes != len(CIFAR100_SUPERCLASS):
            raise MalformedDataError(f"{where}: fine classes {np.flatnonzero(missing)} unseen")
        sup[missing] = CIFAR100_SUPERCLASS[missing]
    return sup


def _read_binary(name: str, folder: Path, n_batches: int, shape) -> tuple[np.ndarray, ...]:
    paths = data_batch_paths(folder)
    if len(paths) != n_batches:
        warnings.warn(
            f"{name}: {folder} holds {len(paths)} data batch files; the SELFIE release has "
            f"{n_batches}. Reading the {len(paths)} found.",
            stacklevel=3,
        )
    x, y, _ = read_binary_split(paths, shape)
    tx, ty, _ = read_binary_split([folder / "test_batch.bin"], shape)
    _check_counts(name, folder, len(y), len(ty))
    return x, y, tx, ty


def _download(name: str, cls_name: str, not_found: Exception) -> Path:
    """Download through torchvision into ``cache_dir()/name``; the release folder."""
    root = cache_dir() / name
    try:
        ds = getattr(tvd, cls_name)(root=str(root), train=True, download=True)
        return Path(ds.root) / ds.base_folder
    except Exception as err:  # no network, ...
        raise DatasetNotFoundError(
            f"{not_found}\n(The download into {root} failed too: {type(err).__name__}: {err})"
        ) from err


def _cifar(name: str, data_dir, download: bool) -> Dataset:
    ten = name == "cifar10"
    release, files, n_batches = (
        ("cifar-10-batches-py", _PY10, 5) if ten else ("cifar-100-python", _PY100, 1)
    )
    how_to = (
        f"allow the network download (download=True, through torchvision, into "
        f"{cache_dir() / name}); or unpack the python release ({release}.tar.gz) into one of the "
        f"folders above or a folder passed with --data-dir; or "
        + _binary_how_to(name, n_batches, (3, 32, 32), "")
    )
    layouts = {
        "python": [f"{release}/{f}" for f in files],
        "python-flat": list(files),
        "binary": list(_BINARY_FILES),
    }
    try:
        folder, layout = _find_layout(name, data_dir, layouts, how_to)
    except DatasetNotFoundError as e:
        if not download or data_dir is not None:  # --data-dir: that copy or an error
            raise
        folder, layout = _download(name, "CIFAR10" if ten else "CIFAR100", e), "python"
        source = f"python release downloaded through torchvision into {folder}"
    else:
        if layout == "python":
            folder = folder / release
        source = f"{'SELFIE binary' if layout == 'binary' else 'python'} release in {folder}"
    sup = None
    if layout == "binary":
        x, y, tx, ty = _read_binary(name, folder, n_batches, (3, 32, 32))
        names = list(CIFAR10_CLASSES if ten else CIFAR100_CLASSES)
        if not ten:
            sup = CIFAR100_SUPERCLASS.copy()
    elif ten:
        x, y, tx, ty, names = _read_cifar10_py(folder)
    else:
        x, y, tx, ty, names, sup = _read_cifar100_py(folder)
    if layout != "binary":
        _check_counts(name, folder, len(y), len(ty))
    return Dataset(
        name=name,
        x=x,
        labels=y,
        test_x=tx,
        test_labels=ty,
        class_names=names,
        labels_are_true=True,
        superclass=sup,
        source=source,
    )


@DATASETS.register("cifar10")
def cifar10(data_dir=None, *, download: bool = True, **_) -> Dataset:
    """CIFAR-10: 50 000 / 10 000 colour 32x32 images, 10 classes (python or SELFIE binary)."""
    return _cifar("cifar10", data_dir, download)


@DATASETS.register("cifar100")
def cifar100(data_dir=None, *, download: bool = True, **_) -> Dataset:
    """CIFAR-100: 50 000 / 10 000 colour 32x32 images, 100 classes in 20 superclasses."""
    return _cifar("cifar100", data_dir, download)


def _binary_only(
    name: str, data_dir, n_batches: int, shape, class_names_for, extra_how_to: str, **fields
) -> Dataset:
    how_to = _binary_how_to(name, n_batches, shape, extra_how_to)
    folder = _find_layout(name, data_dir, {"binary": _BINARY_FILES}, how_to)[0]
    x, y, tx, ty = _read_binary(name, folder, n_batches, shape)
    return Dataset(
        name=name,
        x=x,
        labels=y,
        test_x=tx,
        test_labels=ty,
        class_names=class_names_for(folder),
        source=f"SELFIE binary release in {folder}",
        **fields,
    )


def _tiny_imagenet_names(folder: Path) -> list[str]:
    wnids = folder / "wnids.txt"
    if not wnids.is_file():
        return [f"class{i:03d}" for i in range(200)]
    names = [line.strip() for line in wnids.read_text().splitlines() if line.strip()]
    if len(names) != 200:
        raise MalformedDataError(f"{wnids}: {len(names)} class ids, expected 200")
    return names


@DATASETS.register("tiny-imagenet")
def tiny_imagenet(data_dir=None, *, download: bool = True, **_) -> Dataset:
    """Tiny-ImageNet: 100 000 / 10 000 colour 64x64 images, 200 classes (SELFIE binary)."""
    return _binary_only(
        "tiny-imagenet",
        data_dir,
        4,
        (3, 64, 64),
        _tiny_imagenet_names,
        "A wnids.txt (one WordNet id per line, in label order) beside them names the classes.",
        labels_are_true=True,
    )


@DATASETS.register("animal-10n")
def animal_10n(data_dir=None, *, download: bool = True, **_) -> Dataset:
    """ANIMAL-10N: 50 000 / 5 000 colour 64x64 images, 10 classes, real human label noise."""
    return _binary_only(
        "animal-10n",
        data_dir,
        1,
        (3, 64, 64),
        lambda _folder: list(ANIMAL10N_CLASSES),
        "The binary version is distributed by the ANIMAL-10N dataset page "
        "(https://dm.kaist.ac.kr/datasets/animal-10n/).",
        labels_are_true=False,
    )
