"""Dataset builders on small files in their real on-disk formats, made here in tmp_path."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from noisyfit.data import DATASETS, Dataset, DatasetNotFoundError, MalformedDataError
from noisyfit.data import load_dataset as _load_dataset
from noisyfit.data.binary import (
    read_binary_dataset,
    read_binary_split,
    record_dtype,
    write_binary_dataset,
)
from noisyfit.data.cifar import (
    ANIMAL10N_CLASSES,
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_SUPERCLASS,
)
from noisyfit.data.idx import FASHION_MNIST_CLASSES

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_data_env(tmp_path, monkeypatch):
    """Point $NOISYFIT_DATA (and so the download cache) at an empty folder."""
    empty = tmp_path / "noisyfit-data"
    empty.mkdir()
    monkeypatch.setenv("NOISYFIT_DATA", str(empty))
    return empty


def load_dataset(name, data_dir=None, **kw):
    kw.setdefault("download", False)
    return _load_dataset(name, data_dir, **kw)


def images(n, c, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def write_records(path: Path, ids, labels, x) -> None:
    rec = np.empty(len(ids), dtype=record_dtype(x.shape[1:]))
    rec["id"], rec["label"], rec["img"] = ids, labels, x
    rec.tofile(path)


def make_binary_folder(folder: Path, n_batches, n_per_batch, n_test, k, shape, seed=0):
    """A SELFIE binary folder; returns the data in id order."""
    folder.mkdir(parents=True, exist_ok=True)
    n = n_batches * n_per_batch
    x, tx = images(n, *shape, seed=seed), images(n_test, *shape, seed=seed + 1)
    y, ty = np.arange(n) % k, np.arange(n_test) % k
    for b in range(n_batches):
        s = slice(b * n_per_batch, (b + 1) * n_per_batch)
        write_records(folder / f"data_batch_{b + 1}.bin", np.arange(n)[s], y[s], x[s])
    write_records(folder / "test_batch.bin", np.arange(n_test), ty, tx)
    return x, y, tx, ty


# ----------------------------------------------------------------------------- binary format


def test_record_layout_is_big_endian_id_label_then_channel_major_image(tmp_path):
    x = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2)
    write_records(tmp_path / "f.bin", np.array([1, 0]), np.array([7, 258]), x)
    raw = (tmp_path / "f.bin").read_bytes()
    assert len(raw) == 2 * (8 + 12)
    assert raw[:8] == struct.pack(">II", 1, 7)
    assert raw[8:20] == x[0].tobytes()  # R plane, G plane, B plane, each row-major
    got, labels, ids = read_binary_split([tmp_path / "f.bin"], (3, 2, 2))
    assert labels.tolist() == [258, 7] and ids.tolist() == [0, 1]
    assert np.array_equal(got, x[::-1])


@pytest.mark.parametrize("n_batches", [1, 3])
def test_binary_round_trip(tmp_path, n_batches):
    ds = _load_dataset("synthetic", n_train=50, n_test=20, num_classes=4, channels=3, image_size=6)
    paths = write_binary_dataset(ds, tmp_path / "bin", n_batches=n_batches)
    assert [p.name for p in paths] == [f"data_batch_{i}.bin" for i in range(1, n_batches + 1)] + [
        "test_batch.bin"
    ]
    for nb in (None, n_batches):
        x, y, tx, ty = read_binary_dataset(tmp_path / "bin", (3, 6, 6), n_batches=nb)
        assert x.dtype == np.uint8 and y.dtype == np.int64
        assert np.array_equal(x, ds.x) and np.array_equal(y, ds.labels)
        assert np.array_equal(tx, ds.test_x) and np.array_equal(ty, ds.test_labels)


def test_binary_ids_shuffled_across_files_are_reordered(tmp_path):
    n = 30
    x, y = images(n, 3, 4, 4), np.arange(n) % 5
    perm = np.random.default_rng(1).permutation(n)  # file order ≠ id order
    write_records(tmp_path / "data_batch_1.bin", perm[:11], y[perm[:11]], x[perm[:11]])
    write_records(tmp_path / "data_batch_2.bin", perm[11:], y[perm[11:]], x[perm[11:]])
    write_records(tmp_path / "test_batch.bin", np.arange(3), y[:3], x[:3])
    gx, gy, tx, ty = read_binary_dataset(tmp_path, (3, 4, 4))
    assert np.array_equal(gx, x) and np.array_equal(gy, y)


@pytest.mark.parametrize("ids", [[0, 1, 1, 3], [0, 1, 2, 7]], ids=["duplicate", "gap"])
def test_binary_bad_ids_raise(tmp_path, ids):
    write_records(tmp_path / "b.bin", np.array(ids), np.zeros(4, int), images(4, 1, 2, 2))
    with pytest.raises(MalformedDataError, match=r"ids .*0\.\.3"):
        read_binary_split([tmp_path / "b.bin"], (1, 2, 2))


def test_truncated_binary_file_names_file_and_record_size(tmp_path):
    make_binary_folder(tmp_path, 1, 4, 2, 2, (3, 8, 8))
    f = tmp_path / "data_batch_1.bin"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(MalformedDataError) as e:
        read_binary_dataset(tmp_path, (3, 8, 8))
    msg = str(e.value)
    assert "data_batch_1.bin" in msg and "200" in msg and str(4 * 200 - 5) in msg
    assert "(3, 8, 8)" in msg


def test_binary_batch_numbering_gap_raises(tmp_path):
    make_binary_folder(tmp_path, 3, 2, 2, 2, (1, 2, 2))
    (tmp_path / "data_batch_2.bin").unlink()
    with pytest.raises(MalformedDataError, match="numbered"):
        read_binary_dataset(tmp_path, (1, 2, 2))


# -------------------------------------------------------------------------------- idx (MNIST)


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def make_idx_folder(folder: Path, n=12, n_test=5, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    x, tx = images(n, 1, 28, 28)[:, 0], images(n_test, 1, 28, 28, seed=3)[:, 0]
    y, ty = (np.arange(n) % 10).astype(np.uint8), (np.arange(n_test)[::-1] % 10).astype(np.uint8)
    for stem, arr, magic in [
        ("train-images-idx3-ubyte", x, 0x803),
        ("train-labels-idx1-ubyte", y, 0x801),
        ("t10k-images-idx3-ubyte", tx, 0x803),
        ("t10k-labels-idx1-ubyte", ty, 0x801),
    ]:
        data = idx_bytes(arr, magic)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return x, y, tx, ty


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files(tmp_path, gz):
    x, y, tx, ty = make_idx_folder(tmp_path / "mnist", gz=gz)
    ds = load_dataset("mnist", tmp_path)  # finds data_dir/mnist
    assert ds.x.shape == (12, 1, 28, 28) and ds.x.dtype == np.uint8
    assert np.array_equal(ds.x[:, 0], x) and np.array_equal(ds.labels, y)
    assert np.array_equal(ds.test_x[:, 0], tx) and np.array_equal(ds.test_labels, ty)
    assert ds.class_names == [str(i) for i in range(10)] and ds.labels_are_true


def test_fashion_mnist_idx_files_and_class_names(tmp_path):
    make_idx_folder(tmp_path)
    ds = load_dataset("fashion-mnist", tmp_path)
    assert ds.class_names == FASHION_MNIST_CLASSES and ds.class_names[0] == "T-shirt/top"
    assert str(tmp_path) in ds.source


def test_idx_bad_magic_and_truncation_name_the_file(tmp_path):
    make_idx_folder(tmp_path)
    lab = tmp_path / "train-labels-idx1-ubyte.gz"
    lab.write_bytes(gzip.compress(idx_bytes(np.zeros(12, np.uint8), 0x803)))
    with pytest.raises(MalformedDataError, match=r"train-labels-idx1-ubyte\.gz.*0x00000801"):
        load_dataset("mnist", tmp_path)
    make_idx_folder(tmp_path)
    img = tmp_path / "t10k-images-idx3-ubyte.gz"
    img.write_bytes(gzip.compress(gzip.decompress(img.read_bytes())[:-10]))
    with pytest.raises(MalformedDataError, match=r"t10k-images-idx3-ubyte\.gz.*truncated"):
        load_dataset("mnist", tmp_path)


def test_mnist_download_path_uses_torchvision_raw_folder(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    class FakeMNIST:  # stands in for the network download: writes the raw files
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            self.raw_folder = str(Path(root) / "MNIST" / "raw")
            make_idx_folder(Path(self.raw_folder), n=7, gz=False)

    monkeypatch.setattr(tvd, "MNIST", FakeMNIST)
    ds = load_dataset("mnist", download=True)
    assert len(ds) == 7 and calls and calls[0][1] is True
    assert calls[0][0] == str(tmp_path / "noisyfit-data" / "mnist" / "tv")
    assert "torchvision" in ds.source


def test_failed_download_still_says_where_we_looked(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, *a, **k):
            raise RuntimeError("no network")

    monkeypatch.setattr(tvd, "MNIST", Offline)
    with pytest.raises(DatasetNotFoundError, match=r"(?s)Looked in.*no network"):
        load_dataset("mnist", download=True)


# ------------------------------------------------------------------------------------- CIFAR


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_cifar10_py(root: Path, n_per_batch=3, n_test=4):
    d = root / "cifar-10-batches-py"
    xs, ys = [], []
    for b in range(1, 6):
        x = images(n_per_batch, 3, 32, 32, seed=b)
        y = [(b + i) % 10 for i in range(n_per_batch)]
        dump(
            d / f"data_batch_{b}",
            {b"batch_label": b"x", b"data": x.reshape(n_per_batch, -1), b"labels": y},
        )
        xs.append(x)
        ys += y
    tx = images(n_test, 3, 32, 32, seed=9)
    dump(d / "test_batch", {b"data": tx.reshape(n_test, -1), b"labels": list(range(n_test))})
    dump(d / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_CLASSES]})
    return np.concatenate(xs), np.array(ys), tx


def test_cifar10_python_release(tmp_path):
    x, y, tx = make_cifar10_py(tmp_path / "cifar10")
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x.shape == (15, 3, 32, 32) and np.array_equal(ds.x, x)
    assert np.array_equal(ds.labels, y) and np.array_equal(ds.test_x, tx)
    assert ds.class_names == CIFAR10_CLASSES and ds.superclass is None
    # the release folder itself may be passed as data_dir
    ds2 = load_dataset("cifar10", tmp_path / "cifar10" / "cifar-10-batches-py")
    assert np.array_equal(ds2.x, x)


def test_cifar10_download_goes_to_cache(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    class FakeCIFAR10:
        base_folder = "cifar-10-batches-py"

        def __init__(self, root, train=True, download=False):
            self.root = root
            make_cifar10_py(Path(root), n_per_batch=1, n_test=2)

    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR10)
    ds = load_dataset("cifar10", download=True)
    assert len(ds) == 5 and len(ds.test_x) == 2
    assert (
        tmp_path / "noisyfit-data" / "cifar10" / "cifar-10-batches-py" / "batches.meta"
    ).is_file()
    assert "torchvision" in ds.source


def make_cifar100_py(root: Path, coarse_of=CIFAR100_SUPERCLASS):
    d = root / "cifar-100-python"
    fine = np.arange(100)  # every class once
    tfine = np.array([3, 50, 99])
    x, tx = images(100, 3, 32, 32), images(3, 3, 32, 32, seed=1)
    dump(
        d / "train",
        {
            b"data": x.reshape(100, -1),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": coarse_of[fine].tolist(),
        },
    )
    dump(
        d / "test",
        {
            b"data": tx.reshape(3, -1),
            b"fine_labels": tfine.tolist(),
            b"coarse_labels": coarse_of[tfine].tolist(),
        },
    )
    dump(
        d / "meta",
        {
            b"fine_label_names": [n.encode() for n in CIFAR100_CLASSES],
            b"coarse_label_names": [n.encode() for n in CIFAR100_COARSE_CLASSES],
        },
    )
    return x


def test_cifar100_superclass_table_matches_the_release():
    # the widely used numeric fine→coarse table (e.g. in sparse2coarse helpers), an independent
    # check of the name-based table
    known = [4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
             6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
             5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
             10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
             16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13]  # fmt: skip
    assert CIFAR100_SUPERCLASS.tolist() == known
    assert len(CIFAR100_CLASSES) == 100 and len(set(CIFAR100_CLASSES)) == 100
    assert np.bincount(CIFAR100_SUPERCLASS).tolist() == [5] * 20
    assert CIFAR100_CLASSES[:3] == ["apple", "aquarium_fish", "baby"]
    assert CIFAR100_CLASSES[-1] == "worm"


def test_cifar100_python_release_reads_superclass_from_coarse_labels(tmp_path):
    x = make_cifar100_py(tmp_path)
    ds = load_dataset("cifar100", tmp_path)
    assert np.array_equal(ds.x, x) and ds.num_classes == 100
    assert ds.class_names == CIFAR100_CLASSES
    assert ds.superclass.dtype == np.int64
    assert np.array_equal(ds.superclass, CIFAR100_SUPERCLASS)
    # the superclass really is read from the files, not the table
    other = (np.arange(100) // 5).astype(np.int64)
    make_cifar100_py(tmp_path, coarse_of=other)
    assert np.array_equal(load_dataset("cifar100", tmp_path).superclass, other)


def test_cifar100_inconsistent_coarse_labels_raise(tmp_path):
    make_cifar100_py(tmp_path)
    d = tmp_path / "cifar-100-python"
    with open(d / "test", "rb") as f:
        t = pickle.load(f, encoding="bytes")
    t[b"coarse_labels"][0] = (CIFAR100_SUPERCLASS[3] + 1) % 20
    dump(d / "test", t)
    with pytest.raises(MalformedDataError, match="fine class 3"):
        load_dataset("cifar100", tmp_path)


def test_cifar10_and_cifar100_selfie_binary(tmp_path):
    x, y, tx, ty = make_binary_folder(tmp_path / "cifar10", 5, 2, 3, 10, (3, 32, 32))
    ds = load_dataset("cifar10", tmp_path)
    assert np.array_equal(ds.x, x) and np.array_equal(ds.labels, y)
    assert np.array_equal(ds.test_x, tx) and np.array_equal(ds.test_labels, ty)
    assert ds.class_names == CIFAR10_CLASSES and "binary" in ds.source
    make_binary_folder(tmp_path / "c100", 1, 6, 2, 100, (3, 32, 32))
    ds = load_dataset("cifar100", tmp_path / "c100")
    assert len(ds) == 6 and np.array_equal(ds.superclass, CIFAR100_SUPERCLASS)
    assert ds.class_names == CIFAR100_CLASSES


def test_unexpected_number_of_batches_warns(tmp_path):
    make_binary_folder(tmp_path, 2, 2, 2, 10, (3, 32, 32))
    with pytest.warns(UserWarning, match="2 data batch files.*5"):
        ds = load_dataset("cifar10", tmp_path)
    assert len(ds) == 4


def test_tiny_imagenet_selfie_binary(tmp_path):
    x, y, _, _ = make_binary_folder(tmp_path, 4, 2, 2, 200, (3, 64, 64))
    ds = load_dataset("tiny-imagenet", tmp_path)
    assert ds.x.shape == (8, 3, 64, 64) and np.array_equal(ds.x, x)
    assert ds.num_classes == 200 and ds.class_names[7] == "class007"
    wnids = [f"n{i:08d}" for i in range(200)]
    (tmp_path / "wnids.txt").write_text("\n".join(wnids) + "\n")
    assert load_dataset("tiny-imagenet", tmp_path).class_names == wnids


def test_animal10n_selfie_binary(tmp_path):
    x, y, tx, ty = make_binary_folder(tmp_path / "animal-10n", 1, 10, 5, 10, (3, 64, 64))
    ds = load_dataset("animal-10n", tmp_path)
    assert np.array_equal(ds.x, x) and np.array_equal(ds.labels, y)
    assert np.array_equal(ds.test_labels, ty)
    assert ds.class_names == ANIMAL10N_CLASSES and ds.class_names[9] == "guinea pig"
    assert ds.labels_are_true is False


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "tiny-imagenet", "animal-10n"])
def test_missing_dataset_lists_searched_folders(tmp_path, _isolated_data_env, name):
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset(name, mine)
    msg = str(e.value)
    # --data-dir is the only place searched: no silent fall-back to another copy
    looked = msg.split("Looked in:")[1].split("To get it")[0]
    assert str(mine / name) in looked and str(_isolated_data_env / name) not in looked
    assert "To get it" in msg
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset(name)
    assert str(_isolated_data_env / name) in str(e.value)
    if name in ("tiny-imagenet", "animal-10n"):
        assert "noisyfit convert" in msg and "data_batch_1.bin" in msg


def test_fashion_mnist_how_to_mentions_apt(tmp_path, monkeypatch):
    import noisyfit.data.base as base

    real = base.candidate_dirs
    monkeypatch.setattr(
        base, "candidate_dirs", lambda n, d: [p for p in real(n, d) if "/usr/share" not in str(p)]
    )
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path / "nowhere")


# ------------------------------------------------------------------------------- imagefolder


def save_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_imagefolder_train_test_layout(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("dog", "cat"):
            for i in range(n):
                save_png(
                    tmp_path / split / cls / f"{i}.png",
                    rng.integers(0, 256, (8, 10, 3), dtype=np.uint8),
                )
    # one grayscale image of another size: converted to RGB and resized
    save_png(tmp_path / "train" / "cat" / "z.png", np.full((16, 20), 77, np.uint8))
    ds = load_dataset("imagefolder", tmp_path)
    assert ds.class_names == ["cat", "dog"] and ds.labels_are_true is False
    assert ds.x.shape == (7, 3, 8, 10) and ds.test_x.shape == (2, 3, 8, 10)
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1, 1] and ds.test_labels.tolist() == [0, 1]
    assert ds.extra["train_files"][3] == str(Path("train/cat/z.png"))
    assert (ds.x[3] == 77).all()
    from PIL import Image

    first = np.asarray(Image.open(tmp_path / "train" / "cat" / "0.png"))
    assert np.array_equal(ds.x[0], first.transpose(2, 0, 1))


def test_imagefolder_class_folders_holdout_grayscale_and_resize(tmp_path):
    root = tmp_path / "images"  # tmp_path also holds the fixture's $NOISYFIT_DATA folder
    rng = np.random.default_rng(1)
    for cls in ("a", "b", "c"):
        for i in range(10):
            save_png(root / cls / f"{i}.png", rng.integers(0, 256, (12, 12), dtype=np.uint8))
    ds = load_dataset("imagefolder", root, image_size=6, seed=3)
    assert ds.x.shape == (27, 1, 6, 6) and ds.test_x.shape == (3, 1, 6, 6)
    assert np.bincount(ds.test_labels).tolist() == [1, 1, 1]
    again = load_dataset("imagefolder", root, image_size=6, seed=3)
    assert again.extra["test_files"] == ds.extra["test_files"]
    assert not set(ds.extra["test_files"]) & set(ds.extra["train_files"])


def test_imagefolder_errors(tmp_path):
    root = tmp_path / "images"  # tmp_path also holds the fixture's $NOISYFIT_DATA folder
    root.mkdir()
    with pytest.raises(DatasetNotFoundError):
        load_dataset("imagefolder", root / "absent")
    (root / "empty_class").mkdir()
    with pytest.raises(MalformedDataError, match="no class sub-folder"):
        load_dataset("imagefolder", root)
    (root / "bad").mkdir()
    (root / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(MalformedDataError, match="x.png"):
        load_dataset("imagefolder", root)


# ------------------------------------------------------------------------------------ arrays


def test_arrays_features_with_holdout(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 7)), np.arange(50) % 5
    np.savez(tmp_path / "emb.npz", x=x, y=y, class_names=np.array(list("vwxyz")))
    ds = load_dataset("arrays", tmp_path / "emb.npz")
    assert ds.x.dtype == np.float32 and ds.x.shape == (40, 7) and ds.test_x.shape == (10, 7)
    assert not ds.is_image and ds.class_names == list("vwxyz") and not ds.labels_are_true
    assert np.bincount(ds.test_labels).tolist() == [2] * 5
    rows = {tuple(r) for r in np.vstack([ds.x, ds.test_x]).round(4)}
    assert rows == {tuple(r) for r in x.astype(np.float32).round(4)}
    assert len(load_dataset("arrays", tmp_path)) == 40  # a folder with one .npz works too


@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "NHW"])
def test_arrays_images(tmp_path, layout):
    x = images(6, 3 if layout != "NHW" else 1, 5, 4)
    tx = images(2, x.shape[1], 5, 4, seed=1)
    store = {
        "NHWC": lambda a: a.transpose(0, 2, 3, 1),
        "NCHW": lambda a: a,
        "NHW": lambda a: a[:, 0],
    }[layout]
    np.savez(
        tmp_path / "im.npz",
        x=store(x),
        y=[0, 1, 2, 0, 1, 2],
        x_test=store(tx),
        y_test=np.array([2.0, 1.0]),
    )
    ds = load_dataset("arrays", tmp_path / "im.npz")
    assert ds.is_image and ds.x.dtype == np.uint8 and np.array_equal(ds.x, x)
    assert np.array_equal(ds.test_x, tx) and ds.test_labels.tolist() == [2, 1]
    assert ds.class_names == ["class0", "class1", "class2"]


def test_arrays_errors(tmp_path):
    f = tmp_path / "a.npz"
    np.savez(f, x=np.zeros((4, 3)))
    with pytest.raises(MalformedDataError, match=r"missing array\(s\) \['y'\]"):
        load_dataset("arrays", f)
    np.savez(f, x=np.zeros((4, 3)), y=[0, 1, 0])
    with pytest.raises(MalformedDataError, match="4 rows but y has 3"):
        load_dataset("arrays", f)
    np.savez(f, x=np.zeros((4, 3)), y=[0, 1, 0, 1], x_test=np.zeros((2, 3)))
    with pytest.raises(MalformedDataError, match="together"):
        load_dataset("arrays", f)
    np.savez(f, x=np.zeros((4, 3)), y=[0, 1, 0, 1], x_test=np.zeros((2, 3)), y_test=[0])
    with pytest.raises(MalformedDataError, match="x_test has 2 rows but y_test has 1"):
        load_dataset("arrays", f)
    np.savez(f, x=np.zeros((4, 5, 5, 5), np.uint8), y=[0, 1, 0, 1])
    with pytest.raises(MalformedDataError, match="channel"):
        load_dataset("arrays", f)
    with pytest.raises(DatasetNotFoundError):
        load_dataset("arrays", tmp_path / "nope.npz")


# ------------------------------------------------------------------------------ registry, real


def test_all_builders_registered():
    _load_dataset("synthetic", n_train=4, n_test=4)  # imports the built-ins
    for name in (
        "fashion-mnist",
        "mnist",
        "cifar10",
        "cifar100",
        "tiny-imagenet",
        "animal-10n",
        "imagefolder",
        "arrays",
        "synthetic",
    ):
        assert name in DATASETS


@pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist():
    ds = load_dataset("fashion-mnist")
    assert isinstance(ds, Dataset)
    assert len(ds) == 60000 and len(ds.test_x) == 10000
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert np.bincount(ds.labels).tolist() == [6000] * 10
    assert str(FASHION_DIR) in ds.source
