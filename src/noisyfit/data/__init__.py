"""Datasets (registry, on-disk formats) and the device-resident loader."""

from .base import (
    DATASETS,
    Dataset,
    DatasetNotFoundError,
    MalformedDataError,
    load_dataset,
)

__all__ = ["DATASETS", "Dataset", "DatasetNotFoundError", "MalformedDataError", "load_dataset"]
