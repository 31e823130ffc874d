"""Evaluation on the clean test set (every epoch) and prediction over a dataset."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .. import distributed as dist
from ..data.loader import Loader
from ..data.sharded import eval_shard


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; nothing (float32) on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(method, loader: Loader) -> dict[str, dict[str, float]]:
    """Loss, top-1 and top-5 accuracy of each of the method's networks on ``loader``.

    Returns ``{net_name: {"loss", "acc", "top5"}}``; labels are the loader's (clean) labels.
    With W > 1 processes (torchrun) every rank evaluates its shard (samples r, r + W, …: no
    padding, no duplicates) and the sums are all-reduced, so all ranks return the 1-process
    numbers (up to summation order); every rank must call it.
    """
    was_training = [m.training for m in method.models.values()]
    method.eval()
    sums: dict[str, torch.Tensor] = {}
    n = 0
    if dist.is_distributed():
        loader = eval_shard(loader, dist.rank(), dist.world())  # (a test set ≥ W samples)
    for batch in loader.epoch(0):
        x = batch.x
        if loader.device.type == "cuda" and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(loader.device):
            outs = method.eval_logits(x)
        for name, logits in outs.items():
            logits = logits.float()
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hit = top == batch.labels[:, None]
            vals = torch.stack(
                [
                    F.cross_entropy(logits, batch.labels, reduction="sum"),
                    hit[:, 0].sum().float(),
                    hit.any(1).sum().float(),
                ]
            )
            sums[name] = sums.get(name, 0) + vals
        n += len(batch)
    for m, t in zip(method.models.values(), was_training):
        m.train(t)
    if dist.is_distributed():
        total = dist.all_reduce_sum(
            torch.cat(
                [
                    torch.stack(list(sums.values())).flatten(),
                    torch.tensor([float(n)], device=loader.device),
                ]
            )
        )
        n = int(total[-1])
        sums = dict(zip(sums, total[:-1].view(len(sums), 3)))
    return {
        name: dict(zip(("loss", "acc", "top5"), (v / max(n, 1)).tolist()))
        for name, v in sums.items()
    }


@torch.no_grad()
def predict_probs(model: torch.nn.Module, loader: Loader) -> torch.Tensor:
    """(n, K) softmax probabilities of ``model`` over the loader's samples, in loader order."""
    was = model.training
    model.eval()
    out = []
    for batch in loader.epoch(0):
        with autocast_for(loader.device):
            out.append(model(batch.x).float().softmax(1))
    model.train(was)
    return torch.cat(out)
