"""``noisyfit bench SWEEP.yaml``: methods × noise × seeds, one process per run, resumable;
mean ± std tables in CSV and Markdown (see :mod:`noisyfit.bench`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tyro

from ..bench import aggregate, load_sweep, run_sweep
from ..cli import command


@dataclass
class BenchArgs:
    """Run a sweep file (methods × noise settings × seeds), skipping finished runs, and write
    results.csv, summary.csv and summary.md into its folder."""

    sweep: tyro.conf.Positional[Path]
    """The sweep YAML (examples in benchmarks/sweeps/)."""
    out: Path | None = None
    """Folder of the sweep (default: the file's ``out`` key, else runs/bench/<name>)."""
    jobs: int | None = None
    """Runs at a time, each its own process (default: the file's ``jobs``, else 1)."""
    aggregate_only: bool = False
    """Only re-aggregate the finished runs (start nothing)."""
    dry_run: bool = False
    """List the runs and their status, start nothing."""


@command(
    "bench",
    help="run a benchmark sweep SWEEP.yaml (methods × noise × seeds, resumable) "
    "and aggregate mean ± std into CSV and Markdown",
)
def cmd_bench(argv: Sequence[str]) -> int:
    a = tyro.cli(BenchArgs, args=list(argv), prog="noisyfit bench")
    sweep = load_sweep(a.sweep, a.out)
    if a.jobs is not None:
        sweep.jobs = max(1, a.jobs)
    if a.dry_run:
        for name, _ in sweep.runs():
            done = (sweep.out / "runs" / name / "summary.json").is_file()
            print(f"  {name}: {'done' if done else 'to run'}")
        return 0
    res = aggregate(sweep) if a.aggregate_only else run_sweep(sweep)
    print()
    print(res["markdown"])
    print(f"\nwrote {sweep.out / 'summary.md'}, summary.csv and results.csv")
    failed = [n for n, s in res.get("status", {}).items() if s.startswith("failed")]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}")
    held = [n for n, s in res.get("status", {}).items() if s.startswith(("busy", "refused"))]
    if held:
        print(f"{len(held)} run(s) not started (busy or changed; see above): {', '.join(held)}")
    if failed or held:
        return 1
    return 0
