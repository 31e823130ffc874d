"""The device-resident loader: the whole dataset as uint8 on the device, batches as
``Batch(index, x, labels)``, augmentation on whole batches.

Per epoch the order is a permutation drawn from a generator seeded by (seed, epoch), so a run
resumed at an epoch boundary sees exactly the batches of an uninterrupted run, and a later
multi-process run can split the same global batches across ranks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

#: Normalization modes: per-channel dataset statistics, or per-image standardization
#: (TensorFlow's ``per_image_standardization``, the SELFIE protocol).
NORMALIZE_MODES = ("channel", "per-image", "none")


@dataclass
class Batch:
    """One mini-batch. Methods see only this: never the true labels.

    Attributes:
        index: (b,) int64 sample indices into the training set (key of per-sample state).
        x: (b, C, H, W) or (b, D) float inputs, augmented and normalized.
        labels: (b,) int64 given (noisy) labels.
    """

    index: torch.Tensor
    x: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.index)


@runtime_checkable
class Loader(Protocol):
    """What the engine and the methods may ask of a loader (``Context.loader``/``probe``/``val``).

    :class:`DeviceLoader` (data on the device) and ``data.webvision.FolderLoader`` (image
    files decoded per batch) implement it. N = samples of the underlying set, n = samples this
    loader iterates over (a subset), b = batch size.

    Attributes:
        device: where batches live.
        labels: (N,) int64 the given labels, indexed by ``Batch.index``.
        batch_size: samples per batch.
        indices: (n,) int64 on ``device``, the samples iterated over (all N unless a subset).
        in_memory: the raw inputs are held whole (``x``, (N, ...)): methods that build their
            own views from raw data (DivideMix's second view) need it.
        supports_subsets: ``subset`` and ``eval_view`` work, so a run can train a fresh
            network on part of the data (INCV, F-correction, ``--tau auto``) or predict on it.
    """

    device: torch.device
    labels: torch.Tensor
    batch_size: int
    in_memory: ClassVar[bool]
    supports_subsets: ClassVar[bool]

    @property
    def indices(self) -> torch.Tensor: ...

    @property
    def num_samples(self) -> int:
        """n, the samples one epoch visits."""
        ...

    def __len__(self) -> int:
        """Batches per epoch."""
        ...

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` (order and augmentation seeded by (seed, epoch))."""
        ...

    def subset(self, mask) -> Loader:
        """A loader over the samples where ``mask`` (N,) bool is True (same labels, same
        augmentation); a mask of None: all N samples."""
        ...

    def with_labels(self, labels) -> Loader:
        """The same samples with other labels (N,)."""
        ...

    def eval_view(self, batch_size: int | None = None) -> Loader:
        """The same samples in index order without augmentation (for prediction); the one
        way augmentation is switched off. ``batch_size``: None keeps the loader's."""
        ...

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None) -> Batch:
        """The samples ``index`` (b,) int64 as one batch, in that order (augmented as this
        loader augments, drawing from ``generator`` where the loader can: take it from
        ``eval_view()`` for plain inputs)."""
        ...


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by (seed, epoch): the same on every process and after a resume."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 + 12_345) % (2**63 - 1))
    return g


class DeviceLoader:
    """Iterate over mini-batches of a dataset held on ``device``.

    Args:
        x: (N, C, H, W) uint8 images or (N, D) float features (numpy or torch).
        labels: (N,) int labels given to the method.
        batch_size: samples per batch.
        mean, std: per-channel (per-feature) statistics for ``normalize="channel"``.
        normalize: one of ``NORMALIZE_MODES``.
        augment: random crop with ``pad`` pixels of zero padding + horizontal flip (images).
        shuffle: draw a fresh permutation each epoch (training) or keep the order (evaluation).
        drop_last: drop the last partial batch.
        mask: optional (N,) bool subset of samples to iterate over.
        device: where batches live. The data is stored there too when it fits (uint8 takes
            N·C·H·W bytes: CIFAR 150 MB, Tiny-ImageNet 1.2 GB); on a GPU with less than twice
            that free, it stays in pinned host memory and each batch is copied over.
        seed: base seed of the per-epoch permutation and augmentation.

    Iterate with ``loader.epoch(e)``; ``len(loader)`` is the number of batches. Implements
    :class:`Loader`.
    """

    in_memory: ClassVar[bool] = True
    supports_subsets: ClassVar[bool] = True

    def __init__(
        self,
        x,
        labels,
        *,
        batch_size: int = 128,
        mean=None,
        std=None,
        normalize: str = "channel",
        augment: bool = False,
        pad: int = 4,
        flip: bool = True,
        shuffle: bool = True,
        drop_last: bool = False,
        mask=None,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}; got {normalize!r}")
        self.device = torch.device(device)
        x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
        self.storage = storage_device(x, self.device)
        self.x = x.to(self.storage)
        #: batches are gathered in host memory and copied over (the data did not fit)
        self.host_gather = self.storage != self.device
        if self.storage.type == "cpu" and self.device.type == "cuda":
            self.x = self.x.pin_memory()
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(self.device)
        self.is_image = self.x.ndim == 4
        self.batch_size = int(batch_size)
        self.normalize = normalize
        self.augment = bool(augment) and self.is_image
        self.pad, self.flip = int(pad), bool(flip)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed = int(seed)
        self.indices = self._mask_to_indices(mask)
        shape = (1, -1, 1, 1) if self.is_image else (1, -1)
        scale = 255.0 if self.x.dtype == torch.uint8 else 1.0
        mean = torch.zeros(self.x.shape[1]) if mean is None else torch.as_tensor(mean)
        std = torch.ones(self.x.shape[1]) if std is None else torch.as_tensor(std)
        # x_normalized = x_raw * scale_ + shift_  (one fused multiply-add per batch)
        self._mul = (1.0 / (scale * std.float())).view(shape).to(self.device)
        self._add = (-mean.float() / std.float()).view(shape).to(self.device)

    def _mask_to_indices(self, mask) -> torch.Tensor:
        n = len(self.x)
        if mask is None:
            return torch.arange(n, device=self.device)
        mask = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask)
        if mask.dtype != torch.bool or mask.shape != (n,):
            raise ValueError(f"a subset mask must be a bool tensor of shape ({n},)")
        return torch.nonzero(mask.to(self.device)).flatten()

    def subset(self, mask) -> DeviceLoader:
        """A loader over the samples where ``mask`` (N,) is True, sharing the device data."""
        new = object.__new__(DeviceLoader)
        new.__dict__.update(self.__dict__)
        new.indices = self._mask_to_indices(mask)
        return new

    def with_labels(self, labels) -> DeviceLoader:
        """A loader over the same samples with other labels (N,), sharing the device data."""
        new = object.__new__(DeviceLoader)
        new.__dict__.update(self.__dict__)
        new.labels = torch.as_tensor(labels, dtype=torch.int64).to(self.device)
        if new.labels.shape != self.labels.shape:
            raise ValueError(
                f"expected {tuple(self.labels.shape)} labels, got {tuple(new.labels.shape)}"
            )
        return new

    def eval_view(self, batch_size: int | None = None) -> DeviceLoader:
        """The same samples, in index order, without augmentation, sharing the device data."""
        new = object.__new__(DeviceLoader)
        new.__dict__.update(self.__dict__)
        new.augment, new.shuffle, new.drop_last = False, False, False
        if batch_size is not None:
            new.batch_size = int(batch_size)
        return new

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None) -> Batch:
        """The samples ``index`` (b,) as one batch, in that order (augmented if this loader
        augments, drawing from ``generator``; None: the global generator)."""
        index = torch.as_tensor(index, dtype=torch.int64).to(self.device)
        xb = self.x[index.to(self.storage)].to(self.device)
        return Batch(index, self.transform(xb, generator), self.labels[index])

    @property
    def num_samples(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch``: permutation and augmentation seeded by (seed, epoch)."""
        g = epoch_generator(self.seed, epoch, self.device)
        idx = self.indices
        if self.shuffle:
            idx = idx[torch.randperm(len(idx), generator=g, device=self.device)]
        # data in host memory for a GPU: the order read back once per epoch (not per batch)
        host = idx.to(self.storage) if self.host_gather else None
        for k in range(len(self)):
            bi = idx[k * self.batch_size : (k + 1) * self.batch_size]
            if host is None:
                xb = self.x[bi]
            else:
                xb = self._gather_pinned(host[k * self.batch_size : (k + 1) * self.batch_size])
            yield Batch(bi, self.transform(xb, g), self.labels[bi])

    def _gather_pinned(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows of the host-memory data gathered into pinned memory and copied to the device
        asynchronously (PyTorch's pinned-memory cache reuses a block only once its copy is
        done)."""
        pin = self.device.type == "cuda"
        buf = torch.empty((len(rows), *self.x.shape[1:]), dtype=self.x.dtype, pin_memory=pin)
        torch.index_select(self.x, 0, rows, out=buf)
        return buf.to(self.device, non_blocking=pin)

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)

    def transform(self, xb: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """Augment (if on) and normalize a raw batch."""
        if self.augment:
            xb = random_crop_flip(xb, self.pad, self.flip, g)
        xb = xb.float()
        if self.normalize == "per-image":
            return per_image_standardize(xb)
        if self.normalize == "none":
            return xb
        return xb.mul_(self._mul).add_(self._add)


def storage_device(x: torch.Tensor, device: torch.device) -> torch.device:
    """``device`` if ``x`` fits there with room to spare (CPU always), else the CPU."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if x.numel() * x.element_size() * 2 < free else torch.device("cpu")


def random_crop_flip(
    x: torch.Tensor, pad: int = 4, flip: bool = True, g: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop of a zero-padded batch (same size back) and random horizontal flip.

    One gather for the whole batch: no Python loop over samples. ``x``: (b, C, H, W).
    """
    b, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=dev)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=dev)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        x = xp[bi, ci, rows, cols]
    if flip:
        f = torch.rand(b, generator=g, device=dev) < 0.5
        x = torch.where(f[:, None, None, None], x.flip(-1), x)
    return x


def per_image_standardize(x: torch.Tensor) -> torch.Tensor:
    """(x − mean) / max(std, 1/√M) per image, M = pixels·channels (TF semantics).

    (b, ...) float → same shape. The variance is the mean of the squared deviations, written
    out: on CPU ``Tensor.std(dim)`` / ``var_mean`` take 0.9 ms for a (128, 784) batch, this
    0.1–0.25 ms (equal to 5e-7), and the demo standardizes every batch.
    """
    flat = x.flatten(1)
    d = flat - flat.mean(1, keepdim=True)
    var = (d * d).mean(1, keepdim=True)
    return (d * var.clamp_min(1.0 / flat.shape[1]).rsqrt()).view_as(x)
