"""Write ``src/noisyfit/methods/_mentor_pd_weights.py``: the default MentorNet-PD mentor
(γ = 1, 10 000 steps, seed 0), trained in float64 on one CPU thread, so that every machine uses
the same mentor. Run from the repository root:

    PYTHONPATH=src python scripts/make_mentor_weights.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from noisyfit.methods.mentornet import _train_mentor

OUT = Path(__file__).resolve().parents[1] / "src" / "noisyfit" / "methods" / "_mentor_pd_weights.py"


def main() -> None:
    torch.set_num_threads(1)
    state, mse = _train_mentor(1.0, 10000, 0)
    lines = [
        "# ruff: noqa: E501",
        '"""The default MentorNet-PD mentor (γ 1, 10 000 steps, seed 0), float64.',
        "",
        "Written by scripts/make_mentor_weights.py; do not edit.",
        '"""',
        "",
        "# fmt: off",
        f"TEST_MSE = {mse!r}",
        "STATE = {",
    ]
    for k, t in state.items():
        lines.append(f"    {k!r}: {t.tolist()!r},")
    lines += ["}", "# fmt: on", ""]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT} (held-out MSE {mse:.5f})")


if __name__ == "__main__":
    main()
