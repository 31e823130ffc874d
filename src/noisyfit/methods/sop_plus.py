"""``sop-plus``: SOP+ (Liu et al., ICML 2022): SOP with consistency and class balance.

SOP's loss (``methods/sop.py``, same u, v and their own SGD) plus, on the network and u,

    λ_c · mean_i KL(sg(softmax f(x_i)) ‖ softmax f(x̃_i))      (consistency, x̃ a strong view)
    λ_b · (−Σ_k (1/K) log clamp(mean_i p̂_ik, 1e-4))           (class balance vs the uniform
                                                               prior, on the corrected p̂)

with λ_c = 0.9 (``ratio_consistency``) and λ_b = 0.1 (``ratio_balance``), the code's
``config_cifar100.json`` values. The strong view x̃ is ``noisyfit.data.augment.StrongAugment``
(``aug_type``: AutoAugment's CIFAR-10 policy, flip, pad-crop and Cutout by default; the code
uses AutoAugment + Cutout 16 for the second view); the network's forward on x̃ is a second
pass, and only the first view's outputs enter the SOP terms, as in the code (which
concatenates the two views into one forward pass, so BatchNorm sees both — here each view's
batch statistics are its own).

Departures from ``shengliu66/SOP``: as SOP's; the code's first view is itself augmented by
its data loader (here: the loader's ``--augment`` setting); mixup is off (the code's config has
``mixup.alpha = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..data.augment import StrongAugment
from ..data.loader import Batch
from .base import (
    METHODS,
    ConfigError,
    batch_len,
    batch_mean,
    current_step,
    global_batch_sum,
    global_term,
)
from .sop import EPS, SOP


@METHODS.register("sop-plus")
class SOPPlus(SOP):
    """SOP+ (ICML 2022): SOP with a consistency term on a strong view and class balance."""

    name = "sop-plus"
    distributed = True  # W > 1: global class balance, strong view of the global batch

    @dataclass
    class Config(SOP.Config):
        ratio_consistency: float = 0.9
        """λ_c, weight of the KL consistency to the strong view (code 0.9)."""
        ratio_balance: float = 0.1
        """λ_b, weight of the class-balance term (code 0.1)."""
        aug_type: Literal["autoaug", "randaug", "default"] = "autoaug"
        """Strong view: AutoAugment / RandAugment + flip, crop, Cutout; default: flip, crop."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if config.ratio_consistency < 0 or config.ratio_balance < 0:
            raise ConfigError(
                f"sop-plus: need ratio_consistency ≥ 0 and ratio_balance ≥ 0; got "
                f"{config.ratio_consistency}, {config.ratio_balance}"
            )
        size = tuple(ctx.input_shape[-2:]) if len(ctx.input_shape) == 3 else None
        # the op magnitude tables are built here, not in the step (no host reads there)
        self.augment = StrongAugment(config.aug_type, image_size=size)

    def state_dict(self):
        return {**super().state_dict(), "augment": self.augment.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "augment" in state:  # the strong view's host random draws
            self.augment.load_state_dict(state["augment"])

    def extra_loss(self, batch, logits, pred):
        c = self.config
        k = logits.shape[1]
        loss = torch.zeros((), device=logits.device)
        if c.ratio_balance > 0:  # W > 1: the global batch's mean p̂, gradient via own rows
            avg = (global_batch_sum(pred) / batch_len(batch)).clamp(EPS, 1.0)
            loss = loss + global_term(c.ratio_balance * (-(avg.log() / k).sum()))
        if c.ratio_consistency > 0:
            x2 = self._strong_view(batch)
            logits2 = self.models["net"](x2).float()
            target = torch.softmax(logits.float(), 1).detach()
            kl = F.kl_div(F.log_softmax(logits2, 1), target, reduction="none").sum(1)
            loss = loss + c.ratio_consistency * batch_mean(kl)
        return loss

    def _strong_view(self, batch) -> torch.Tensor:
        """(b, ...) the strong view; W > 1 with raw uint8 images: the global batch's view (the
        same random draws as one process) and this rank's rows of it."""
        loader, sh = self.ctx.loader, current_step()
        gi = getattr(batch, "global_index", None)
        raw = (
            loader is not None
            and not hasattr(loader, "strong_view")
            and getattr(loader, "is_image", False)
            and loader.x.dtype == torch.uint8
        )
        if sh is None or gi is None or not raw:
            return self.augment(loader, batch)
        return self.augment(loader, Batch(gi, batch.x, loader.labels[gi]))[sh.part]
