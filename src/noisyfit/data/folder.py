"""A user's own data: a folder of images per class (``imagefolder``) or an ``.npz`` (``arrays``).

Both treat the given labels as possibly wrong (``labels_are_true=False``): these are the
datasets whose wrong labels a user wants found.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .base import (
    DATASETS,
    Dataset,
    DatasetNotFoundError,
    MalformedDataError,
    data_warning,
    note_files_read,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def holdout_split(
    labels: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: (train indices, test indices), both sorted.

    Each class gives ``round(fraction * n_k)`` samples to the test split but keeps at least one
    for training; if that leaves the test split empty (tiny data), one sample of the largest
    class with two or more samples is held out.
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"holdout fraction must lie in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        n_test = min(int(round(fraction * len(idx))), len(idx) - 1)
        test.append(rng.permutation(idx)[:n_test])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    if fraction > 0 and len(test_idx) == 0:
        ks, counts = np.unique(labels, return_counts=True)
        if len(counts) and counts.max() >= 2:
            idx = np.flatnonzero(labels == ks[counts.argmax()])
            test_idx = np.array([rng.choice(idx)])
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx.astype(np.int64)


# ------------------------------------------------------------------------------- imagefolder


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """class name → its image files, for each non-hidden sub-folder of ``root`` with images."""
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _image_files(d)
        if not files:
            data_warning(
                f"{d}: the folder holds no image ({', '.join(IMAGE_EXTENSIONS)}), so it is not "
                f"a class: the classes are the other folders of {root}. Add its images, or "
                "move it out"
            )
            continue
        out[d.name] = files
    return out


def _as_size(image_size) -> tuple[int, int] | None:
    """(H, W) from an int, an (H, W) pair or a string "32" / "32x48"; None stays None."""
    if image_size is None:
        return None
    if isinstance(image_size, str):
        parts = image_size.lower().replace(",", "x").split("x")
        image_size = [int(p) for p in parts if p.strip()]
    if isinstance(image_size, int | np.integer):
        h = w = int(image_size)
    else:
        sizes = [int(s) for s in image_size]
        if len(sizes) == 1:
            sizes = sizes * 2
        if len(sizes) != 2:
            raise ConfigError(f"image_size must be an int or (H, W), got {image_size!r}")
        h, w = sizes
    if h < 1 or w < 1:
        raise ConfigError(f"image_size must be positive, got {(h, w)}")
    return h, w


def _decode_images(files: Sequence[Path], size: tuple[int, int] | None) -> np.ndarray:
    """Decode ``files`` into uint8 (N, C, H, W); C = 1 if all are grayscale, else 3."""
    note_files_read(*files)
    modes = []
    for f in files:  # headers only: cheap
        try:
            with Image.open(f) as im:
                modes.append(im.mode)
                if size is None:
                    size = (im.height, im.width)
        except Exception as e:
            raise MalformedDataError(f"{f}: cannot read image ({type(e).__name__}: {e})") from e
    gray = all(m in _GRAY_MODES for m in modes)
    mode, c = ("L", 1) if gray else ("RGB", 3)
    h, w = size
    x = np.empty((len(files), c, h, w), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                if im.size != (w, h):
                    im = im.resize((w, h), Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except Exception as e:
            raise MalformedDataError(f"{f}: cannot decode image ({type(e).__name__}: {e})") from e
        x[i] = a[None] if gray else a.transpose(2, 0, 1)
    return x


@DATASETS.register("imagefolder")
def imagefolder(
    data_dir=None,
    *,
    download: bool = True,
    image_size=None,
    test_fraction: float = 0.1,
    seed: int = 0,
    **_,
) -> Dataset:
    """Your images: ``train/<class>/*`` and ``test/<class>/*``, or ``<class>/*`` (10% held out).

    Args:
        data_dir: the folder. With ``train/`` and ``test/`` sub-folders those are the splits;
            otherwise its sub-folders are the classes and a seeded stratified ``test_fraction``
            is held out as the test split.
        image_size: every image is resized to this (an int for square, or (H, W)); default the
            size of the first training image.
        test_fraction, seed: the holdout when there is no ``test/`` folder.

    Class names are the training sub-folder names, sorted. Images are decoded with PIL into 3
    channels, or 1 if every image is grayscale. ``extra["train_files"]`` /
    ``extra["test_files"]`` hold each sample's path relative to ``data_dir``;
    ``extra["train_rows"]`` (and ``extra["test_rows"]`` after a holdout) each sample's position
    in the sorted list of all files, so results map back to the user's files.
    """
    if data_dir is None:
        raise DatasetNotFoundError(
            "imagefolder needs --data-dir: a folder with train/<class>/ and test/<class>/ "
            "sub-folders of images, or just one sub-folder per class"
        )
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetNotFoundError(f"imagefolder: {root} is not a folder")
    size = _as_size(image_size)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = _class_folders(root / "train")
        test = _class_folders(root / "test")
        if not train:
            raise MalformedDataError(f"{root / 'train'}: no class sub-folder holds images")
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise MalformedDataError(
                f"{root / 'test'}: classes {unknown} have no folder under {root / 'train'}"
            )
        names = sorted(train)
        files = [f for k in names for f in train[k]]
        y = np.array([i for i, k in enumerate(names) for _ in train[k]], dtype=np.int64)
        test_files = [f for k in names for f in test.get(k, [])]
        ty = np.array([i for i, k in enumerate(names) for _ in test.get(k, [])], dtype=np.int64)
        layout = "train/ and test/ folders"
        rows = {"train_rows": np.arange(len(files))}
    else:
        classes = _class_folders(root)
        if not classes:
            raise MalformedDataError(
                f"{root}: no class sub-folder holds images ({', '.join(IMAGE_EXTENSIONS)}); "
                f"expected <class>/*.png or train/<class>/ + test/<class>/"
            )
        names = sorted(classes)
        all_files = [f for k in names for f in classes[k]]
        all_y = np.array([i for i, k in enumerate(names) for _ in classes[k]], dtype=np.int64)
        tr, te = holdout_split(all_y, test_fraction, seed)
        files, y = [all_files[i] for i in tr], all_y[tr]
        test_files, ty = [all_files[i] for i in te], all_y[te]
        layout = f"class folders, seeded {test_fraction:.0%} holdout (seed {seed})"
        rows = {"train_rows": tr, "test_rows": te}
    both = _decode_images(files + test_files, size)  # one channel decision for both splits
    x, tx = both[: len(files)], both[len(files) :]
    return Dataset(
        name="imagefolder",
        x=np.ascontiguousarray(x),
        labels=y,
        test_x=np.ascontiguousarray(tx),
        test_labels=ty,
        class_names=names,
        labels_are_true=False,
        source=f"image folder {root} ({layout})",
        extra={
            "train_files": [str(f.relative_to(root)) for f in files],
            "test_files": [str(f.relative_to(root)) for f in test_files],
            **rows,
        },
    )


# ------------------------------------------------------------------------------------ arrays


def _labels(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise MalformedDataError(f"{path}: {key!r} must be 1-D labels, got shape {arr.shape}")
    if arr.dtype.kind in "iu" or arr.dtype == bool:
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all():
        return arr.astype(np.int64)
    raise MalformedDataError(f"{path}: {key!r} must hold integer class ids, got dtype {arr.dtype}")


def _inputs(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    """float32 (N, D) features, or uint8 (N, C, H, W) images from (N,H,W), NCHW or NHWC."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iubf":
        raise MalformedDataError(f"{path}: {key!r} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 2:
        return arr.astype(np.float32)
    if arr.ndim not in (3, 4):
        raise MalformedDataError(
            f"{path}: {key!r} has shape {arr.shape}; expected (N, D) features or images "
            f"(N, H, W), (N, C, H, W) or (N, H, W, C) with C in {{1, 3}}"
        )
    if arr.dtype != np.uint8:
        if arr.dtype.kind in "iu" and (arr.size == 0 or (arr.min() >= 0 and arr.max() <= 255)):
            arr = arr.astype(np.uint8)
        else:
            raise MalformedDataError(
                f"{path}: image array {key!r} must be uint8 (0..255), got {arr.dtype}; "
                f"scale and cast it, or flatten it to (N, D) features"
            )
    if arr.ndim == 3:
        return arr[:, None]
    if arr.shape[1] in (1, 3):
        return arr
    if arr.shape[3] in (1, 3):
        return np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
    raise MalformedDataError(
        f"{path}: image array {key!r} has shape {arr.shape}; neither axis 1 (NCHW) nor axis 3 "
        f"(NHWC) is a channel count of 1 or 3"
    )


def _npz_path(data_dir) -> Path:
    if data_dir is None:
        raise DatasetNotFoundError(
            "arrays needs --data-dir: an .npz file with x, y and optionally x_test, y_test, "
            "class_names"
        )
    path = Path(data_dir)
    if path.is_dir():
        found = sorted(path.glob("*.npz"))
        if len(found) != 1:
            raise DatasetNotFoundError(
                f"arrays: {path} is a folder with {len(found)} .npz files; pass the .npz itself"
            )
        path = found[0]
    if not path.is_file():
        raise DatasetNotFoundError(f"arrays: {path} does not exist (expected an .npz file)")
    return path


@DATASETS.register("arrays")
def arrays(
    data_dir=None,
    *,
    download: bool = True,
    test_fraction: float = 0.2,
    seed: int = 0,
    **_,
) -> Dataset:
    """Your arrays: an ``.npz`` with ``x``, ``y`` [, ``x_test``, ``y_test``, ``class_names``].

    ``x`` may be float (N, D) feature vectors (kept as float32, e.g. embeddings) or uint8
    images (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3} (stored as (N, C, H, W)).
    Without ``x_test``/``y_test`` a seeded stratified ``test_fraction`` is held out. Without
    ``class_names`` the classes are ``class0 … class{K-1}``, K = largest label + 1.
    ``extra["train_rows"]`` (and ``extra["test_rows"]`` after a holdout) hold each sample's row
    in the user's ``x``, so results map back to the user's rows.
    """
    path = _npz_path(data_dir)
    note_files_read(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise MalformedDataError(
                    f"{path}: holds one array, not an .npz archive; save x and y with "
                    "np.savez(path, x=..., y=...)"
                )
            data = {k: z[k] for k in z.files}
    except MalformedDataError:
        raise
    except ValueError as e:
        if "pickle" not in str(e):
            raise MalformedDataError(
                f"{path}: not a readable .npz file ({e}); it may be truncated: write it again"
            ) from e
        raise MalformedDataError(
            f"{path}: cannot load without pickle ({e}); store class_names as a str array "
            f"(np.array(names)), not objects"
        ) from e
    except Exception as e:  # noqa: BLE001  (truncated zip, bad CRC, not a zip, ...)
        raise MalformedDataError(
            f"{path}: not a readable .npz file ({type(e).__name__}: {e}); it may be "
            "truncated: write it again with np.savez"
        ) from e
    missing = [k for k in ("x", "y") if k not in data]
    if missing:
        raise MalformedDataError(
            f"{path}: missing array(s) {missing}; has {sorted(data)} (need x and y, optionally "
            f"x_test, y_test, class_names)"
        )
    if ("x_test" in data) != ("y_test" in data):
        raise MalformedDataError(f"{path}: x_test and y_test must be given together")
    x = _inputs(data["x"], "x", path)
    y = _labels(data["y"], "y", path)
    if len(x) != len(y):
        raise MalformedDataError(f"{path}: x has {len(x)} rows but y has {len(y)} labels")
    if "x_test" in data:
        tx = _inputs(data["x_test"], "x_test", path)
        ty = _labels(data["y_test"], "y_test", path)
        if len(tx) != len(ty):
            raise MalformedDataError(
                f"{path}: x_test has {len(tx)} rows but y_test has {len(ty)} labels"
            )
        if tx.shape[1:] != x.shape[1:] or tx.dtype != x.dtype:
            raise MalformedDataError(
                f"{path}: x_test {tx.shape[1:]} {tx.dtype} does not match x {x.shape[1:]} {x.dtype}"
            )
        how = "given test split"
        rows = {"train_rows": np.arange(len(x))}
    else:
        tr, te = holdout_split(y, test_fraction, seed)
        x, tx, y, ty = x[tr], x[te], y[tr], y[te]
        how = f"seeded {test_fraction:.0%} holdout (seed {seed})"
        rows = {"train_rows": tr, "test_rows": te}
    if "class_names" in data:
        cn = np.asarray(data["class_names"])
        if cn.ndim != 1:
            raise MalformedDataError(f"{path}: class_names must be 1-D, got shape {cn.shape}")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in cn.tolist()]
    else:
        k = int(max(y.max(initial=-1), ty.max(initial=-1))) + 1
        names = [f"class{i}" for i in range(k)]
    return Dataset(
        name="arrays",
        x=x,
        labels=y,
        test_x=tx,
        test_labels=ty,
        class_names=names,
        labels_are_true=False,
        source=f"arrays in {path} ({how})",
        extra=rows,
    )
