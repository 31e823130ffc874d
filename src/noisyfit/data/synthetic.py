"""A tiny synthetic image dataset for tests and smoke runs (no files needed)."""

from __future__ import annotations

import numpy as np

from .base import DATASETS, Dataset


@DATASETS.register("synthetic")
def synthetic(
    data_dir=None,
    *,
    n_train: int = 512,
    n_test: int = 256,
    num_classes: int = 4,
    image_size: int = 8,
    channels: int = 1,
    seed: int = 0,
    **_,
) -> Dataset:
    """Separable toy images: each class is a fixed random pattern plus pixel noise (for tests)."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0, 255, size=(num_classes, channels, image_size, image_size))

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % num_classes
        rng.shuffle(y)
        x = protos[y] + rng.normal(0, 40, size=(n, channels, image_size, image_size))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    x, y = make(n_train)
    tx, ty = make(n_test)
    return Dataset(
        name="synthetic",
        x=x,
        labels=y,
        test_x=tx,
        test_labels=ty,
        class_names=[f"class{i}" for i in range(num_classes)],
        source="generated in memory",
    )
