"""``noisyfit report RUN_DIR``: the run's HTML page and PNG figures (see :mod:`noisyfit.report`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tyro

from ..api import report_run
from ..cli import command


@dataclass
class ReportArgs:
    """Write RUN_DIR/report/index.html (self-contained, opens offline) and its PNG figures."""

    run_dir: tyro.conf.Positional[Path]
    """A run folder (written by noisyfit train)."""
    top: int = 32
    """Number of suspected label errors shown and written to suspected_errors.csv."""


@command(
    "report",
    help="write a run's self-contained HTML report and PNG figures: "
    "curves, label precision/recall, T heatmaps, class balance, suspected label errors",
)
def cmd_report(argv: Sequence[str]) -> int:
    a = tyro.cli(ReportArgs, args=list(argv), prog="noisyfit report")
    try:
        page = report_run(a.run_dir, top=a.top)
    except ImportError as e:
        print(f"noisyfit report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {page} (and its PNGs in {page.parent})")
    return 0
