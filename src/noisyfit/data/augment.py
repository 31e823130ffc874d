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

both applied to whole batches (:class:`BatchedPolicy`): the draws are made on the host with a
seeded :class:`random.Random` (saved in checkpoints), the images grouped by drawn op, and each
group goes through torchvision's op as one tensor call: no per-image loop, no host read;

then a random horizontal flip, a random crop of the 4-pixel zero-padded image and Cutout of a
square of side H/2 (16 px on 32×32), centred anywhere and clipped at the border, filled with 0
after normalization (the mean colour; IEG fills 0 in its [-1, 1] scale, i.e. mid-grey).

The weak view stays on the device (the loader's crop/flip); the strong view starts from the raw
uint8 images ``loader.x[batch.index]`` and is normalized like the loader's batches. A loader that
cannot hand out raw images (the streaming WebVision loader) provides its own
``strong_view(batch)``; :func:`strong_view` uses it when present.
"""

from __future__ import annotations

import random
from typing import Literal

import torch
from torchvision.transforms import v2

from ..errors import ConfigError
from .loader import Batch, random_crop_flip

AugType = Literal["autoaug", "randaug", "default"]
AUG_TYPES = ("autoaug", "randaug", "default")


class BatchedPolicy:
    """torchvision's AutoAugment (CIFAR-10 policy) or RandAugment, applied to whole batches.

    The random choices are drawn on the host from ``rng`` (a :class:`random.Random`: no tensor
    is read back, so nothing waits for the device), exactly as ``v2.AutoAugment.forward`` draws
    them per image: a sub-policy uniformly from the 25, each of its two ops kept with the op's
    probability, a signed magnitude negated with probability ½. The images are then grouped by
    (op, magnitude) at each of the two stages and every group goes through torchvision's op
    (``_apply_image_or_video_transform``) as one batched tensor call, so a batch of b images
    costs at most ~35 op calls per stage instead of 2·b, and no Python loop runs per image.
    The permutations that bring each group together are moved to the device in one copy.

    ``kind="randaug"``: IEG's RandAugment: ``num_ops`` ops, each kept with probability
    ``prob``, magnitude bin drawn in [1, max_magnitude), one draw for the whole batch.
    """

    def __init__(self, kind: str = "autoaug", rng: random.Random | None = None):
        self.kind = kind
        self.rng = rng if rng is not None else random.Random(torch.initial_seed())
        self._aa = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
        self._ra = v2.RandAugment()
        self._mags: dict[tuple[str, int, int, int], list[float] | None] = {}

    def warm(self, h: int, w: int) -> None:
        """Build the magnitude tables of (h, w) images now (host reads of torchvision's tables,
        once, outside the training step)."""
        for space, bins in ((self._aa._AUGMENTATION_SPACE, 10), (self._ra._AUGMENTATION_SPACE, 11)):
            for op in space:
                self._magnitudes(space, op, bins, h, w)

    def _magnitudes(self, space, op: str, bins: int, h: int, w: int) -> list[float] | None:
        key = (op, bins, h, w)
        if key not in self._mags:
            m = space[op][0](bins, h, w)
            self._mags[key] = None if m is None else [float(v) for v in m]
        return self._mags[key]

    def _op(self, space, op: str, bins: int, idx: int | None, h: int, w: int):
        """(op, signed magnitude) as torchvision draws them."""
        mags = self._magnitudes(space, op, bins, h, w)
        if mags is None:
            return op, 0.0
        mag = mags[idx]
        if space[op][1] and self.rng.random() <= 0.5:
            mag = -mag
        return op, mag

    def plan(self, n: int, h: int, w: int, *, per_image: bool = True) -> list[list]:
        """The AutoAugment ops of ``n`` images: per image a list of two entries, each an
        (op, magnitude) pair or None (not applied). ``per_image=False``: one draw for all."""
        space, policies = self._aa._AUGMENTATION_SPACE, self._aa._policies
        out = []
        for _ in range(n if per_image else 1):
            policy = policies[self.rng.randrange(len(policies))]
            ops = []
            for op, p, idx in policy:
                ops.append(self._op(space, op, 10, idx, h, w) if self.rng.random() <= p else None)
            out.append(ops)
        return out if per_image else out * n

    def apply(self, x: torch.Tensor, plan: list[list]) -> torch.Tensor:
        """``x`` (b, C, H, W) uint8 with image i going through ``plan[i]`` stage by stage: one
        torchvision call per (stage, op, magnitude) group."""
        b = len(x)
        if b == 0:
            return x
        stages = len(plan[0])
        # host-side: per stage, an order that makes each group contiguous, and the group sizes
        orders, runs = [], []
        for s in range(stages):
            keys = [plan[i][s] or ("Identity", 0.0) for i in range(b)]
            order = sorted(range(b), key=lambda i: keys[i])
            groups: list[tuple[tuple[str, float], int]] = []
            for i in order:
                if groups and groups[-1][0] == keys[i]:
                    groups[-1] = (keys[i], groups[-1][1] + 1)
                else:
                    groups.append((keys[i], 1))
            orders.append(order)
            runs.append(groups)
        # x_s: the batch in stage s's order; to go from stage s-1's order to s's, gather with
        # pos[s] = positions of stage s's order within stage s-1's order
        where = list(range(b))  # where[i]: position of image i in the current order
        gathers = []
        for order in orders:
            gathers.append([where[i] for i in order])
            where = [0] * b
            for pos, i in enumerate(order):
                where[i] = pos
        gathers.append(where)  # back to the batch order
        idx = torch.tensor(gathers, dtype=torch.int64)
        if x.device.type == "cuda":
            idx = idx.pin_memory()
        idx = idx.to(x.device, non_blocking=True)
        for s in range(stages):
            x = x[idx[s]]
            parts, at = [], 0
            for (op, mag), n in runs[s]:
                part = x[at : at + n]
                at += n
                if op != "Identity":
                    part = self._aa._apply_image_or_video_transform(
                        part, op, mag, interpolation=self._aa.interpolation, fill=self._aa._fill
                    )
                parts.append(part)
            x = torch.cat(parts) if len(parts) > 1 else parts[0]
        return x[idx[stages]]

    def randaug_plan(
        self, h: int, w: int, *, num_ops: int = 2, prob: float = 0.5, max_magnitude: int = 10
    ) -> list:
        """IEG's RandAugment draw for a batch: a list of (op, magnitude), one entry per op kept."""
        space = self._ra._AUGMENTATION_SPACE
        names = list(space)
        ops = []
        for _ in range(num_ops):
            if self.rng.random() >= prob:
                continue
            m = self.rng.randrange(1, max_magnitude)
            op = names[self.rng.randrange(len(names))]
            ops.append(self._op(space, op, max_magnitude + 1, m, h, w))
        return ops

    def __call__(self, x: torch.Tensor, *, per_image: bool = True) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.kind == "randaug":
            for op, mag in self.randaug_plan(h, w):
                if op != "Identity":
                    x = self._ra._apply_image_or_video_transform(
                        x, op, mag, interpolation=self._ra.interpolation, fill=self._ra._fill
                    )
            return x
        return self.apply(x, self.plan(len(x), h, w, per_image=per_image))

    def state_dict(self) -> dict:
        return {"rng": list(self.rng.getstate()[1]), "version": self.rng.getstate()[0]}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate((int(state["version"]), tuple(int(v) for v in state["rng"]), None))


def autoaugment(
    x: torch.Tensor, *, per_image: bool = True, rng: random.Random | None = None
) -> torch.Tensor:
    """AutoAugment (CIFAR-10 policy) on a uint8 batch (b, C, H, W); a sub-policy per image,
    applied batched (:class:`BatchedPolicy`)."""
    return BatchedPolicy("autoaug", rng)(x, per_image=per_image)


def randaugment(x: torch.Tensor, *, rng: random.Random | None = None) -> torch.Tensor:
    """IEG's RandAugment on a uint8 batch: 2 ops, each kept with probability 0.5 and with an
    integer magnitude in [1, 10), one draw for the whole batch."""
    return BatchedPolicy("randaug", rng)(x)


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
        image_size: (H, W) of the images, to build the op magnitude tables up front.
    """

    def __init__(
        self,
        kind: AugType = "autoaug",
        *,
        pad: int = 4,
        cutout_size: int | None = None,
        per_image: bool = True,
        image_size: tuple[int, int] | None = None,
    ):
        if kind not in AUG_TYPES:
            raise ConfigError(f"unknown aug_type {kind!r}; valid: {', '.join(AUG_TYPES)}")
        self.kind, self.pad, self.cutout_size, self.per_image = kind, pad, cutout_size, per_image
        self._norm_cache: dict[int, object] = {}
        self.batched = BatchedPolicy(kind if kind != "default" else "autoaug")
        if image_size is not None and kind != "default":
            self.batched.warm(*image_size)

    def policy(self, raw: torch.Tensor) -> torch.Tensor:
        """The AutoAugment/RandAugment step on a raw uint8 batch (identity for ``default``)."""
        if self.kind == "default":
            return raw
        return self.batched(raw, per_image=self.per_image)

    def state_dict(self) -> dict:
        """The host random state of the policy draws (for checkpoints)."""
        return self.batched.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batched.load_state_dict(state)

    def _normalizer(self, loader):
        """``loader.eval_view()``: normalizes but does not augment (no crop/flip of its own)."""
        key = id(loader)
        if key not in self._norm_cache:
            self._norm_cache = {key: loader.eval_view()}
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
