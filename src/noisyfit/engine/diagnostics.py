"""Scoring what a method selects, weights or relabels against the true labels.

Only the engine holds the true labels. Every method is scored the same way from its
:class:`~noisyfit.methods.base.StepOutput`:

* **label precision** (LP): fraction of the selected samples whose given label is correct;
* **label recall** (LR): fraction of the correctly labelled samples seen that were selected;
* **weight precision**: share of the loss weight carried by correctly labelled samples;
* **correction accuracy**: fraction of the relabelled samples whose new label is the truth;
* **label accuracy of trained labels**: among selected samples, how often the label the
  method trained on (given or refurbished) is the truth.

A method that reports no selection keeps every sample (LP = the clean fraction, LR = 1).
Counts accumulate on the device and are read once per epoch (no host sync in the step).

Besides the epoch counters, the last verdict on every sample (kept / dropped / relabelled, the
label trained on and the method's score) is kept for ``samples.csv``.
"""

from __future__ import annotations

import torch

#: Verdict codes in ``SampleVerdicts.verdict``.
VERDICTS = {0: "unseen", 1: "kept", 2: "dropped", 3: "relabelled"}

_COUNTERS = (
    "seen", "clean", "selected", "selected_clean", "clean_selected",
    "w_sum", "w_clean", "relabelled", "relabelled_correct",
    "trained_correct", "trained",
)  # fmt: skip


class SelectionMeter:
    """Per-epoch counters of selection quality.

    Args:
        true_labels: (N,) int64 on the device, or None when no truth exists (then only
            counts that need no truth — selected fraction, relabelled fraction — are logged).
    """

    def __init__(self, true_labels: torch.Tensor | None, device: torch.device):
        self.true = true_labels
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.c = torch.zeros(len(_COUNTERS), dtype=torch.float64, device=self.device)

    @torch.no_grad()
    def update(self, index, given, selected=None, weights=None, new_labels=None) -> None:
        b = len(index)
        sel = torch.ones(b, dtype=torch.bool, device=given.device) if selected is None else selected
        trained = given if new_labels is None else new_labels
        relab = trained != given
        w = sel.double() if weights is None else weights.detach().double() * sel
        if self.true is not None:
            t = self.true[index]
            clean = given == t
            ok = trained == t
        else:  # no truth: counters that need it stay 0
            clean = ok = torch.zeros_like(sel)
        vals = torch.stack([
            torch.zeros((), device=self.device, dtype=torch.float64) + b,
            clean.sum().double(),
            sel.sum().double(),
            (sel & clean).sum().double(),
            (sel & clean).sum().double(),
            w.sum(),
            (w * clean).sum(),
            (sel & relab).sum().double(),
            (sel & relab & ok).sum().double(),
            (sel & ok).sum().double(),
            sel.sum().double(),
        ])  # fmt: skip
        self.c += vals

    def compute(self) -> dict[str, float | None]:
        """The epoch's metrics (None where undefined or where no truth exists)."""
        c = dict(zip(_COUNTERS, self.c.tolist()))

        def ratio(a: float, b: float) -> float | None:
            return a / b if b > 0 else None

        out: dict[str, float | None] = {
            "selected_frac": ratio(c["selected"], c["seen"]),
            "relabelled_frac": ratio(c["relabelled"], c["seen"]),
        }
        if self.true is not None:
            out.update(
                label_precision=ratio(c["selected_clean"], c["selected"]),
                label_recall=ratio(c["clean_selected"], c["clean"]),
                weight_precision=ratio(c["w_clean"], c["w_sum"]),
                correction_accuracy=ratio(c["relabelled_correct"], c["relabelled"]),
                trained_label_accuracy=ratio(c["trained_correct"], c["trained"]),
                clean_frac_seen=ratio(c["clean"], c["seen"]),
            )
        return out


class SampleVerdicts:
    """The last verdict of the method on every training sample (for ``samples.csv``)."""

    def __init__(self, num_samples: int, given: torch.Tensor, device: torch.device):
        self.verdict = torch.zeros(num_samples, dtype=torch.int8, device=device)
        self.label = given.clone().to(device)
        self.score = torch.full((num_samples,), float("nan"), device=device)
        self.weight = torch.full((num_samples,), float("nan"), device=device)

    @torch.no_grad()
    def update(self, index, given, selected=None, weights=None, new_labels=None, score=None):
        code = torch.ones_like(index, dtype=torch.int8)
        if selected is not None:
            code = torch.where(selected, code, torch.full_like(code, 2))
        trained = given if new_labels is None else new_labels
        code = torch.where((trained != given) & (code == 1), torch.full_like(code, 3), code)
        self.verdict[index] = code
        self.label[index] = trained
        if score is not None:
            self.score[index] = score.detach().float()
        if weights is not None:
            self.weight[index] = weights.detach().float()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "verdict": self.verdict,
            "label": self.label,
            "score": self.score,
            "weight": self.weight,
        }

    def load_state_dict(self, s: dict[str, torch.Tensor]) -> None:
        for k, v in s.items():
            getattr(self, k).copy_(v)
