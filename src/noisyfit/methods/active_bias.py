"""``active-bias``: Active Bias (Chang, Learned-Miller, McCallum, NIPS 2017), SGD-WPV.

"SGD weighted by prediction variance", as the SELFIE repository implements it
(``SELFIE/algorithm/activebias.py``, ``method/active_bias_sampler.py``, HEAD ``cc5d602``):

* per sample keep the history of p_t = softmax probability of its **given** label ỹ, one entry
  per appearance (before the step's update);
* after ``warm_up`` epochs (all weights 1 before), a sample of the batch gets
  w̃ = √(v̂ + v̂²/(n − 1)) + s, with v̂ the population variance of its n recorded p_t and s the
  smoothness; the weights are normalized to sum to the batch size, w = b·w̃ / Σ w̃, and the
  loss is mean_i(w_i · CE_i);
* the weights of a step use the history *before* the step's probability is appended.

Departures from the code:

* **Bounded memory**: the code appends every probability to an unbounded Python list per
  sample and calls ``np.var`` on it; here Welford's running (count, mean, M2) per sample in
  float64 device tensors give the same population variance (M2 / n) in O(N) memory.
* **n ≤ 1 guard**: v̂²/(n − 1) is taken as 0 for n ≤ 1 (the code would divide by zero; after
  a warm-up of ≥ 2 epochs this never happens with our permutation batches).
* If every weight of a batch is 0 (s = 0 and no variance yet) the batch falls back to
  uniform weights instead of dividing by zero.
* Batches are a permutation per epoch (every sample once) rather than independent draws; the
  loss's L2 term is the optimizer's weight decay; the HEAD ``activebias.py`` NameError
  (``test_ids``) obviously does not exist here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import METHODS, ConfigError, Method, StepOutput, batch_mean, current_step


def active_bias_weights(count: torch.Tensor, m2: torch.Tensor, smoothness: float) -> torch.Tensor:
    """Normalized SGD-WPV weights of a batch from its Welford statistics.

    Args:
        count: (b,) number n of recorded probabilities per sample.
        m2: (b,) Welford's M2 = Σ (p − mean)² per sample (0 when n ≤ 1).
        smoothness: s.

    Returns:
        (b,) float32 weights w = b·w̃/Σw̃, w̃ = √(v̂ + v̂²/(n − 1)) + s, v̂ = M2/n; v̂ = 0 and the
        correction term 0 for n ≤ 1 (M2 is 0 there, so clamping the divisors suffices);
        uniform 1 if Σw̃ = 0.
    """
    var = m2 / count.clamp_min(1)
    w = torch.sqrt(var + var * var / (count - 1).clamp_min(1)) + smoothness
    total = w.sum()
    w = w * (w.shape[0] / total.clamp_min(1e-300))
    return torch.where(total > 0, w, torch.ones_like(w)).float()


def welford_update(
    count: torch.Tensor, mean: torch.Tensor, m2: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Welford step per sample: (count, mean, M2) after appending x (all (b,))."""
    n = count + 1
    delta = x - mean
    new_mean = mean + delta / n
    return n, new_mean, m2 + delta * (x - new_mean)


@METHODS.register("active-bias")
class ActiveBias(Method):
    """Active Bias (NIPS 2017): weight samples by the variance of p(given label) over time."""

    name = "active-bias"
    short_run_options = {"warm_up": "{quarter}"}
    distributed = True  # W > 1: weights normalised over the global batch (replicated stats)

    @dataclass
    class Config:
        warm_up: int = 25
        """Epochs with all weights 1 (SELFIE repo: 25; songhwanjun/ActiveBias: 15)."""
        smoothness: float = 0.2
        """s, added to every weight (SELFIE repo HEAD: 0.2; 0.02 before the 2020 upload)."""

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        if config.warm_up < 0 or config.smoothness < 0:
            raise ConfigError(
                "active-bias: warm_up and smoothness must be ≥ 0; got "
                f"warm_up={config.warm_up}, smoothness={config.smoothness}"
            )
        self.models = {"net": ctx.make_model()}
        # per sample: Welford's (count n, mean, M2) of p_t(ỹ), float64, in one (N, 3) tensor
        # so a step reads and writes them with one gather and one scatter
        self.stats = torch.zeros(ctx.num_samples, 3, dtype=torch.float64, device=ctx.device)
        self.state_names = ("stats",)

    @property
    def count(self) -> torch.Tensor:
        return self.stats[:, 0]

    @property
    def mean(self) -> torch.Tensor:
        return self.stats[:, 1]

    @property
    def m2(self) -> torch.Tensor:
        return self.stats[:, 2]

    def training_step(self, batch, epoch):
        idx, y = batch.index, batch.labels
        logits = self.models["net"](batch.x)
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        s = self.stats[idx]
        sh = current_step()
        if epoch < self.config.warm_up:
            w = torch.ones_like(ce)
            loss = batch_mean(ce)
        elif sh is None:
            w = active_bias_weights(s[:, 0], s[:, 2], self.config.smoothness)
            loss = (w * ce).mean()
        else:  # W > 1: normalised over the global batch, from the replicated statistics
            sg = self.stats[batch.global_index]
            w = active_bias_weights(sg[:, 0], sg[:, 2], self.config.smoothness)[sh.part]
            loss = batch_mean(w * ce)
        with torch.no_grad():
            p = torch.exp(-ce.detach().double())  # softmax probability of the given label
            n, mean, m2 = welford_update(s[:, 0], s[:, 1], s[:, 2], p)
            self.stats[idx] = torch.stack([n, mean, m2], 1)
        return StepOutput(loss=loss, logits=logits, weights=w.detach(), score=mean.float())
