"""Test-wide settings.

OpenMP threads sleep instead of spinning while they wait (OMP_WAIT_POLICY=PASSIVE): on a
shared 2-core machine spinning threads can slow small torch ops down by orders of magnitude.
Set before torch is first imported.
"""

import gzip
import importlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Runs in tests skip the HTML report at the end of `train` unless a test turns it on
# (tests/test_product.py does, where the report is what is tested).
os.environ.setdefault("NOISYFIT_REPORT", "0")


@pytest.fixture
def interrupted(monkeypatch):
    """``interrupted(method, epoch, **train_kw)``: train until Ctrl-C lands at the end of epoch
    ``epoch`` (0-based, after its checkpoint is due but before it is written: the checkpoint on
    disk then holds epochs 0 … epoch-1) and return the run folder, as a user stopping a run
    would leave it. The method is left unpatched afterwards."""
    import noisyfit
    from noisyfit.methods import METHODS, _builtin  # noqa: F401  (registers the built-ins)

    def run(method: str, epoch: int, **kw):
        cls = METHODS.get(method)
        original = cls.on_epoch_end

        def stop(self, e):
            if e == epoch:
                raise KeyboardInterrupt
            return original(self, e)

        monkeypatch.setattr(cls, "on_epoch_end", stop)
        try:
            with pytest.raises(KeyboardInterrupt):
                noisyfit.train(method=method, **kw)
        finally:
            monkeypatch.setattr(cls, "on_epoch_end", original)
        return Path(kw["out"]) / kw["name"]

    return run


def _fashion_idx_folder(folder: Path, n=400, n_test=60, seed=0) -> Path:
    """Fashion-MNIST's four idx.gz files in the real on-disk format: random 28×28 images,
    labels ``i % 10``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for stem, arr, magic in [
        ("train-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 0x803),
        ("train-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), 0x801),
        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), 0x803),
        ("t10k-labels-idx1-ubyte", (np.arange(n_test) % 10).astype(np.uint8), 0x801),
    ]:
        head = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape)
        (folder / f"{stem}.gz").write_bytes(gzip.compress(head + arr.tobytes()))
    return folder


@pytest.fixture
def fashion_idx():
    """``fashion_idx(folder, n=400, n_test=60)``: write a small Fashion-MNIST idx folder."""
    return _fashion_idx_folder


@pytest.fixture
def benchmark_script(monkeypatch):
    """``benchmark_script(name)``: import ``benchmarks/<name>.py`` (scripts, not a package)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    return importlib.import_module
