"""Strong augmentation for IEG's second view: AutoAugment or RandAugment, then flip, pad-crop
and Cutout.

The policies are torchvision's (``torchvision.transforms.v2.AutoAugment`` with the CIFAR-10
policy, ``v2.RandAugment``); nothing here re-implements an image operation except Cutout, a
batched mask on the normalized tensor. As in IEG's ``dataset_utils/utils.py``:

* ``autoaug``: one of AutoAugment's CIFAR-10 sub-policies drawn **per image** (what IEG's code
  runs when no multiprocessing pool is set; ``per_image=False`` draws one for the whole batch);
* ``randaug``: 2 ops, each applied with probability 0.5 and an integer magnitude drawn from
  1 … 9 on a 0 … 10 scale, the same ops and magnitudes for the whole batch (each op is
  torchvision's ``RandAugment(num_ops=1, magnitude=m, num_magnitude_bins=11)``);
* ``default``: no policy, flip and pad-crop only (IEG's ``cifar_process``);

then a random horizontal flip, a random crop of the 4-pixel zero-padded image and Cutout of a
square of side H/2 (16 px on 32×32), centred anywhere and clipped at the border, filled with 0
after normalization (the mean colour; IEG fills 0 in its [-1, 1] scale, i.e. mid-grey).

The weak view stays on the device (the loader's crop/flip); the strong view starts from the raw
uint8 images ``loader.x[batch.index]`` and is normalized like the loader's batches. A loader that
cannot hand out raw images (the streaming WebVision loader) provides its own
``strong_view(batch)``; :func:`strong_view` uses it when present.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torchvision.transforms import v2

from .data.loader import Batch, random_crop_flip

AugType = Literal["autoaug", "randaug", "default"]
AUG_TYPES = ("autoaug", "randaug", "default")


def autoaugment(x: torch.Tensor, *, per_image: bool = True) -> torch.Tensor:
    """AutoAugment (CIFAR-10 policy) on a uint8 batch (b, C, H, W); a sub-policy per image."""
    aa = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    if not per_image or len(x) == 0:
        return aa(x)
    return torch.stack([aa(img) for img in x])


def randaugment(
    x: torch.Tensor, *, num_ops: int = 2, prob: float = 0.5, max_magnitude: int = 10
) -> torch.Tensor:
    """IEG's RandAugment on a uint8 batch: ``num_ops`` ops, each kept with probability ``prob``
    and with an integer magnitude in [1, max_magnitude), one draw for the whole batch."""
    for _ in range(num_ops):
        if torch.rand(()) >= prob:
            continue
        m = int(torch.randint(1, max_magnitude, ()))
        x = v2.RandAugment(num_ops=1, magnitude=m, num_magnitude_bins=max_magnitude + 1)(x)
    return x


def cutout(x: torch.Tensor, size: int, value: float = 0.0) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017) on a batch (b, C, H, W), in place on a copy: a
    ``size``×``size`` square per image, centred uniformly at random and clipped at the border."""
    b, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (b, 1, 1), device=dev)
    cx = torch.randint(0, w, (b, 1, 1), device=dev)
    ys = torch.arange(h, device=dev)[None, :, None]
    xs = torch.arange(w, device=dev)[None, None, :]
    half = size // 2
    inside = (ys >= cy - half) & (ys < cy + half) & (xs >= cx - half) & (xs < cx + half)
    return x.masked_fill(inside[:, None], value)


class StrongAugment:
    """The strong view of a batch from a loader (see the module docstring).

    Args:
        kind: ``autoaug``, ``randaug`` or ``default``.
        pad: zero padding of the random crop (4).
        cutout_size: side of the Cutout square (None: half the image height; 0: off).
        per_image: AutoAugment sub-policy per image (True, IEG's code) or per batch.
    """

    def __init__(
        self,
        kind: AugType = "autoaug",
        *,
        pad: int = 4,
        cutout_size: int | None = None,
        per_image: bool = True,
    ):
        if kind not in AUG_TYPES:
            raise ValueError(f"unknown aug_type {kind!r}; valid: {', '.join(AUG_TYPES)}")
        self.kind, self.pad, self.cutout_size, self.per_image = kind, pad, cutout_size, per_image
        self._norm_cache: dict[int, object] = {}

    def policy(self, raw: torch.Tensor) -> torch.Tensor:
        """The AutoAugment/RandAugment step on a raw uint8 batch (identity for ``default``)."""
        if self.kind == "autoaug":
            return autoaugment(raw, per_image=self.per_image)
        if self.kind == "randaug":
            return randaugment(raw)
        return raw

    def _normalizer(self, loader):
        """A view of ``loader`` that normalizes but does not augment (its own crop/flip)."""
        key = id(loader)
        if key not in self._norm_cache:
            norm = copy.copy(loader)
            norm.augment = False
            self._norm_cache = {key: norm}
        return self._norm_cache[key]

    def __call__(self, loader, batch: Batch, raw: torch.Tensor | None = None) -> torch.Tensor:
        """(b, C, H, W) float strong view of ``batch``, normalized like the loader's batches.

        Without raw uint8 images (no loader, feature vectors, float data), the view is built
        from ``batch.x`` itself: flip, pad-crop and Cutout only (no policy).
        """
        if loader is not None and hasattr(loader, "strong_view"):
            return loader.strong_view(batch)
        raw_ok = (
            loader is not None
            and getattr(loader, "is_image", False)
            and loader.x.dtype == torch.uint8
        )
        if not raw_ok:
            x = batch.x
            if x.ndim != 4:
                return x
            x = random_crop_flip(x, self.pad, True)
            return self._cutout(x) if self.kind != "default" else x
        raw = loader.x[batch.index] if raw is None else raw  # raw: e.g. the weak view's crop
        raw = self.policy(raw)
        raw = random_crop_flip(raw, self.pad, True)
        x = self._normalizer(loader).transform(raw)
        return self._cutout(x) if self.kind != "default" else x

    def _cutout(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2] // 2 if self.cutout_size is None else self.cutout_size
        return cutout(x, size) if size > 0 else x


def strong_view(loader, batch: Batch, kind: AugType = "autoaug") -> torch.Tensor:
    """One-off helper: ``StrongAugment(kind)(loader, batch)``."""
    return StrongAugment(kind)(loader, batch)
