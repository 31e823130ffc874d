"""``noisyfit reproduce NAME``: train a seed paper's protocol and compare with its number.

::

    noisyfit reproduce --list
    noisyfit reproduce selfie-cifar10-pair-0.4-densenet25 [--seed 1] [--out runs]
    noisyfit reproduce incv-cifar10-sym-0.5 --override dataset=synthetic model=cnn-tiny epochs=1

Presets live in :mod:`noisyfit.presets`. The comparison (ours, published, difference,
tolerance, source) is printed and saved as ``reproduce.json`` in the run folder; the exit
status is 0 when the run is within tolerance, 3 when it is not (the run itself succeeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

import tyro

from ..api import train
from ..cli import command, parse_args
from ..config import KeyValues
from ..engine.run import write_json
from ..presets import PRESETS, compare, get_preset


@dataclass
class ReproduceArgs:
    """Train a named preset of a seed paper's protocol and compare its result with the
    published number (spec/methods.md §9)."""

    name: Annotated[str | None, tyro.conf.Positional, tyro.conf.arg(metavar="NAME")] = None
    """Preset name (see --list)."""
    list: bool = False
    """List the presets and exit."""
    seed: int | None = None
    """Training seed (default: the preset's)."""
    out: str | None = None
    """Parent folder of the run (default: runs)."""
    override: KeyValues = field(default_factory=dict)
    """Change config fields, e.g. dataset=synthetic model=cnn-tiny epochs=1 (the comparison
    is then only a wiring check); values are read by the fields' types."""
    progress: bool = True
    """Show a progress bar per epoch."""


@command(
    "reproduce",
    help="train a seed paper's protocol (NAME) and compare with its "
    "published number; --list shows the presets",
)
def cmd_reproduce(argv: Sequence[str]) -> int:
    a = parse_args(ReproduceArgs, argv, prog="noisyfit reproduce")
    if a.list or not a.name:
        print(f"{'preset':<40} {'metric':<14} {'published':>9} {'tol':>6}  source")
        for pr in PRESETS.values():
            print(
                f"{pr.name:<40} {pr.metric:<14} {100 * pr.published:>8.2f}% "
                f"{100 * pr.tolerance:>5.1f}  {pr.source}"
            )
        return 0
    preset = get_preset(a.name)
    over: dict = dict(a.override)
    if a.seed is not None:
        over["seed"] = a.seed
    if a.out is not None:
        over["out"] = a.out
    if not a.progress:
        over["progress"] = False
    cfg = preset.train_config(over)
    over = {k: getattr(cfg, k) for k in over}  # as typed by the converter (reproduce.json)
    result = train(cfg)
    cmp = compare(preset, result.summary)
    cmp["overrides"] = over
    write_json(result.run_dir / "reproduce.json", cmp)
    ours = cmp["ours"]
    print(
        f"\n{preset.name}: {preset.metric} ours "
        f"{'n/a' if ours is None else f'{100 * ours:.2f}%'}, published "
        f"{100 * preset.published:.2f}% (tolerance ±{100 * preset.tolerance:.1f}); "
        f"{'WITHIN' if cmp['within_tolerance'] else 'OUTSIDE'} tolerance"
    )
    print(f"  source: {preset.source}")
    if preset.note:
        print(f"  note: {preset.note}")
    if over:
        print(f"  overrides {over}: a wiring check, not a reproduction")
    print(f"  run folder: {result.run_dir}")
    return 0 if cmp["within_tolerance"] else 3
