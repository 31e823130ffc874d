"""Benchmark sweeps: methods × noise settings × seeds, one subprocess per run, resumable.

A sweep file (YAML)::

    name: selfie_family                 # optional (default: the file's stem)
    out: runs/bench/selfie_family       # optional (default: runs/bench/<name>)
    methods: [standard, coteaching, selfie]     # or a mapping: method -> method_options
    method_options:                     # optional per-method options
      coteaching: {t_k: 7}
    method_config:                      # optional per-method TrainConfig fields
      selfie: {epochs: 120}             # e.g. SELFIE's restarts: rounds × round_epochs
    noise: [pair:0.4, symmetric:0.4]    # KIND:RATE strings, or {noise: pair, noise_rate: 0.4}
    seeds: [0, 1]
    config:                             # shared TrainConfig fields for every run
      dataset: fashion-mnist
      epochs: 30
    report: true                        # optional: each run writes its HTML report
    jobs: 1                             # optional: runs at a time (one process each)
    oracle: true                        # optional: add the clean-data reference row
    in_process: false                   # optional: run in this process (small runs)
    nproc: 1                            # optional: processes per run (torchrun --standalone)

Every combination becomes ``<out>/runs/<method>-<noise><rate>-s<seed>/`` trained by
``python -m noisyfit train --config <out>/configs/<run>.yaml`` in its own process. A run whose
``summary.json`` exists is skipped; one with a checkpoint but no summary is resumed
(``--resume``). The aggregate over seeds (mean ± std of best and last clean test accuracy,
last-epoch label precision/recall, seconds per epoch, CPU seconds per epoch and that CPU time
as a multiple of ``standard``'s under the same noise) goes to ``<out>/results.csv`` (one row
per run), ``<out>/summary.csv`` and ``<out>/summary.md``.

**The oracle** (``oracle: true``): per noise setting and seed, a run
``oracle-<noise><rate>-s<seed>`` trains ``standard`` at the same budget (the sweep's config) on
the correctly labelled training samples only. The benchmark process, not a method, uses the
truth: it builds the noisy training set exactly as the runs do (same subset, noise kind, rate
and noise seed), keeps the rows whose noisy label equals the true one and writes them with the
test split to ``<out>/oracle/<noise><rate>.npz``; the oracle run trains on that file as the
``arrays`` dataset with ``--noise none``. No method ever sees it. Its label precision/recall are
not measured (its labels are all correct by construction).

**In process** (``in_process: true``): the runs are trained one after the other by
:func:`noisyfit.train` in the bench process, each dataset loaded once, instead of one
``python -m noisyfit train`` process per run — for sweeps of many small runs, where starting a
process and loading the dataset take longer than training. Results are the same; ``jobs`` is
then ignored.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import csv
import ctypes
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import api
from .api import prepare_data, train
from .config import TrainConfig, from_dict, load_config, read_yaml, save_config
from .engine.ddp import runs_distributed
from .engine.run import RunLock
from .errors import ConfigError, MissingFileError, NoisyfitError
from .methods.base import METHODS, baseline_method, method_config


@dataclass
class Sweep:
    """A parsed sweep file (see the module docstring)."""

    name: str
    out: Path
    methods: list[str]
    method_options: dict[str, dict[str, Any]]
    noise: list[tuple[str, float]]
    seeds: list[int]
    config: dict[str, Any] = field(default_factory=dict)
    report: bool = True
    method_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: int = 1
    oracle: bool = False
    in_process: bool = False
    nproc: int = 1

    def oracle_file(self, kind: str, rate: float) -> Path:
        """The clean-rows ``.npz`` of the oracle runs of noise ``kind`` at ``rate``."""
        return self.out / "oracle" / f"{kind}{rate:g}.npz"

    def runs(self) -> list[tuple[str, TrainConfig]]:
        """(run name, TrainConfig) of every combination, checked like a config file (the
        oracle runs last)."""
        out = []
        for method in self.methods:
            for kind, rate in self.noise:
                for seed in self.seeds:
                    name = f"{method}-{kind}{rate:g}-s{seed}"
                    opts = dict(self.method_options.get(method) or {})  # from_dict: as text
                    d = {
                        **self.config,
                        **(self.method_config.get(method) or {}),
                        "method": method,
                        "noise": kind,
                        "noise_rate": rate,
                        "seed": seed,
                        "method_options": opts,
                        "out": str(self.out / "runs"),
                        "name": name,
                        "progress": False,
                    }
                    out.append((name, from_dict(d)))
        if self.oracle:
            for kind, rate in self.noise:
                for seed in self.seeds:
                    name = f"{ORACLE}-{kind}{rate:g}-s{seed}"
                    d = {
                        **self.config,
                        "method": baseline_method(),
                        "method_options": {},
                        "dataset": "arrays",
                        "data_dir": str(self.oracle_file(kind, rate)),
                        "train_subset": None,
                        "test_subset": None,
                        "noise": "none",
                        "noise_rate": 0.0,
                        "seed": seed,
                        "out": str(self.out / "runs"),
                        "name": name,
                        "progress": False,
                    }
                    out.append((name, from_dict(d)))
        return out

    def noisy_config(self, kind: str, rate: float) -> TrainConfig:
        """The config whose training set the oracle of (kind, rate) cleans."""
        return from_dict({**self.config, "noise": kind, "noise_rate": rate, "progress": False})


#: The name of the clean-data reference row.
ORACLE = "oracle"


def oracle_data(sweep: Sweep, kind: str, rate: float) -> Path:
    """Write (once) the oracle's training file: the correctly labelled rows of the noisy
    training set of (kind, rate), and the test split (see the module docstring)."""
    path = sweep.oracle_file(kind, rate)
    if path.is_file():
        return path
    data = prepare_data(sweep.noisy_config(kind, rate))
    if data.true is None:
        raise ConfigError(
            f"sweep {sweep.name}: the oracle needs true labels, but "
            f"{sweep.config.get('dataset')}'s labels are not ground truth; remove `oracle: true`"
        )
    ds = data.dataset
    clean = data.noisy.labels == data.true
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x=ds.x[clean], y=ds.labels[clean], x_test=ds.test_x, y_test=ds.test_labels)
    tmp.replace(path)
    (path.with_suffix(".json")).write_text(
        json.dumps(
            {
                "noise": kind,
                "noise_rate": rate,
                "train_samples": int(len(clean)),
                "clean_samples": int(clean.sum()),
                "noisy_labels_sha256": data.noisy.manifest.sha256,
            },
            indent=2,
        )
    )
    return path


def _noise(v: Any) -> tuple[str, float]:
    if isinstance(v, str):
        kind, _, rate = v.partition(":")
        return kind, float(rate or 0.0)
    if isinstance(v, dict):
        return str(v["noise"]), float(v.get("noise_rate", 0.0))
    raise ConfigError(f"a noise setting is KIND:RATE or {{noise, noise_rate}}; got {v!r}")


def load_sweep(path: str | Path, out: str | Path | None = None) -> Sweep:
    """Parse and check a sweep file (every run's config is validated before anything runs).

    Raises:
        ConfigError: one line naming the file and the problem (malformed YAML, unknown keys,
            values of the wrong kind, a cell's config out of range).
    """
    try:
        return _load_sweep(path, out)
    except NoisyfitError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as e:  # values of the wrong kind
        raise ConfigError(
            f"{path}: a value has the wrong kind ({type(e).__name__}: {e}); see the sweep "
            "format in `noisyfit bench --help` and benchmarks/sweeps/"
        ) from None


def _load_sweep(path: str | Path, out: str | Path | None = None) -> Sweep:
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"sweep file {p} does not exist")

    d = read_yaml(p, "sweep file")
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: a sweep file is a mapping (methods:, noise:, seeds:, config:)")
    known = {
        "name",
        "out",
        "methods",
        "method_options",
        "noise",
        "seeds",
        "config",
        "description",
        "report",
        "method_config",
        "jobs",
        "oracle",
        "in_process",
        "nproc",
    }
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(
            f"{p}: unknown sweep key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
        )
    methods = d.get("methods") or [baseline_method()]
    opts = dict(d.get("method_options") or {})
    if isinstance(methods, dict):
        for m, o in methods.items():
            opts.setdefault(m, o or {})
        methods = list(methods)
    if ORACLE in methods:
        raise ConfigError(f"{p}: `{ORACLE}` is not a method; add the reference with `oracle: true`")
    for m in methods:  # unknown names and options fail now, with the valid ones
        try:
            method_config(METHODS.get(m), opts.get(m))
        except ConfigError as e:
            raise ConfigError(f"{p}: method_options: {e}") from None
    nproc = int(d.get("nproc", 1))
    if nproc < 1 or (nproc > 1 and d.get("in_process")):
        raise ConfigError(
            f"{p}: nproc {nproc}: at least 1, and runs of nproc > 1 are not in_process"
        )
    if nproc > 1:  # refused methods fail now, not in a cell
        for m in methods:
            if not runs_distributed(METHODS.get(m)):
                raise ConfigError(
                    f"{p}: method {m!r} does not run with nproc {nproc} (its step is not exact "
                    "across processes); give it its own sweep with nproc 1"
                )
    name = d.get("name") or p.stem
    s = Sweep(
        name=name,
        out=Path(out or d.get("out") or Path("runs") / "bench" / name),
        methods=[str(m) for m in methods],
        method_options=opts,
        noise=[_noise(v) for v in (d.get("noise") or ["symmetric:0.4"])],
        seeds=[int(x) for x in (d.get("seeds") or [0])],
        config=d.get("config") or {},
        report=bool(d.get("report", True)),
        method_config=d.get("method_config") or {},
        jobs=int(d.get("jobs", 1)),
        oracle=bool(d.get("oracle", False)),
        in_process=bool(d.get("in_process", False)),
        nproc=nproc,
    )
    s.runs()  # validate every config now
    return s


#: Config keys that do not change a run's results (left out of the cell's hash).
UNHASHED_KEYS = ("progress",)


def config_hash(cfg: TrainConfig | dict[str, Any]) -> str:
    """SHA-256 of a cell's resolved config (all keys but :data:`UNHASHED_KEYS`)."""
    d = cfg.to_dict() if isinstance(cfg, TrainConfig) else dict(cfg)
    d = {k: v for k, v in d.items() if k not in UNHASHED_KEYS}
    text = json.dumps(d, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def _changed_keys(run_dir: Path, cfg: TrainConfig) -> list[str] | None:
    """Keys whose values in ``run_dir/config.yaml`` differ from the cell's (None: no run yet).

    A config.yaml that cannot be read counts as changed (key ``config.yaml``).
    """
    f = run_dir / "config.yaml"
    if not f.is_file():
        return None
    try:
        old = load_config(f).to_dict()
    except ConfigError:
        return ["config.yaml"]
    new = cfg.to_dict()
    if config_hash(old) == config_hash(new):
        return []
    return [
        f"{k} {old.get(k)!r} → {new.get(k)!r}"
        for k in sorted(new)
        if k not in UNHASHED_KEYS
        and json.dumps(old.get(k), default=list) != json.dumps(new.get(k), default=list)
    ]


#: The cells' processes now running (each the leader of its own process group).
_CHILDREN: set[subprocess.Popen] = set()
_CHILDREN_LOCK = threading.Lock()


def stop_children(sig: int = signal.SIGTERM, wait_s: float = 10.0) -> None:
    """Send ``sig`` to every running cell's process group; SIGKILL what is left after
    ``wait_s`` seconds."""
    with _CHILDREN_LOCK:
        procs = list(_CHILDREN)
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + wait_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()


atexit.register(stop_children)


def _run_one(name: str, cfg: TrainConfig, sweep: Sweep, log) -> str:
    run_dir = sweep.out / "runs" / name
    holder = RunLock.holder(run_dir) if run_dir.is_dir() else None
    if holder:
        status = (
            f"busy: {run_dir} is in use by {holder} (a run of an earlier sweep still "
            "training?); not started, stop it or wait"
        )
        if log:
            log(f"  {name}: {status}")
        return status
    changed = _changed_keys(run_dir, cfg)
    if changed:
        status = (
            f"refused: {run_dir} was trained with another config ({', '.join(changed)}); "
            "delete the folder to train the changed cell, or give the sweep another out"
        )
        if log:
            log(f"  {name}: {status}")
        return status
    if (run_dir / "summary.json").is_file():
        if log:
            log(f"  {name}: finished before, skipped")
        return "skipped"
    if name.startswith(ORACLE + "-"):
        oracle_data(sweep, *_oracle_noise(sweep, name))
    if sweep.in_process:
        return _run_in_process(name, cfg, sweep, log)
    cmd = [sys.executable, "-m", "noisyfit", "train"]
    if sweep.nproc > 1:  # each cell under torchrun, on this machine
        launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={sweep.nproc}"]
        cmd = [sys.executable, *launch, "-m", "noisyfit", "train"]
    if (run_dir / "checkpoint.pt").is_file():
        cmd += ["--resume", str(run_dir), "--no-progress"]
        status = "resumed"
    else:
        cfg_dir = sweep.out / "configs"
        cfg_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, cfg_dir / f"{name}.yaml")
        cmd += ["--config", str(cfg_dir / f"{name}.yaml")]
        status = "ran"
    if not sweep.report:
        cmd.append("--no-report")
    (sweep.out / "logs").mkdir(parents=True, exist_ok=True)
    env = os.environ.copy()
    env[PARENT_ENV] = str(os.getpid())  # the child ends itself if the sweep dies (kill -9)
    if sweep.jobs * sweep.nproc > 1:  # parallel processes share the cores
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // (sweep.jobs * sweep.nproc)))
    t0 = time.perf_counter()
    with open(sweep.out / "logs" / f"{name}.log", "a") as f:
        # its own process group: a Ctrl-C of the terminal reaches the sweep, which forwards it
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        with _CHILDREN_LOCK:
            _CHILDREN.add(proc)
        try:
            rc = proc.wait()
        finally:
            with _CHILDREN_LOCK:
                _CHILDREN.discard(proc)
    if rc != 0:
        status = f"failed (exit {rc}; see {sweep.out / 'logs' / (name + '.log')})"
    if log:
        log(f"  {name}: {status} in {time.perf_counter() - t0:.1f} s")
    return status


#: Environment variable naming the sweep's pid in a cell's process (see ``watch_parent``).
PARENT_ENV = "NOISYFIT_PARENT_PID"


def watch_parent() -> None:
    """In a cell's process: end (SIGTERM) when the sweep that started it ends, however it
    ends (``kill -9`` included): ``PR_SET_PDEATHSIG`` on Linux (for the sweep's direct child),
    and a thread that checks every second that the sweep is still there — its direct parent,
    or, for the ranks of a cell run under torchrun (whose parent is torchrun's agent), a live
    process with the sweep's pid."""
    want = os.environ.get(PARENT_ENV)
    if not want:
        return
    want_pid = int(want)
    if sys.platform.startswith("linux") and os.getppid() == want_pid:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass

    def gone() -> bool:
        if os.getppid() == want_pid:
            return False
        try:
            os.kill(want_pid, 0)  # signal 0: is the sweep still there?
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    if gone():  # the sweep died before we got here
        os.kill(os.getpid(), signal.SIGTERM)

    def poll() -> None:
        while True:
            time.sleep(1.0)
            if gone():
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=poll, name="noisyfit-parent-watch", daemon=True).start()


def _oracle_noise(sweep: Sweep, name: str) -> tuple[str, float]:
    """(kind, rate) of the oracle run ``name``."""
    for kind, rate in sweep.noise:
        if name.rsplit("-s", 1)[0] == f"{ORACLE}-{kind}{rate:g}":
            return kind, rate
    raise KeyError(name)


class _SharedDatasets:
    """While active, :func:`noisyfit.api.prepare_data` gets each dataset from one load (a
    shallow copy per run: preparing a run rebinds the arrays, it never writes into them)."""

    def __enter__(self):
        self._api, self._orig, cache = api, api.load_dataset, {}

        def load(name, data_dir=None, **kw):
            key = (name, str(data_dir), tuple(sorted(kw.items())))
            if key not in cache:
                cache[key] = self._orig(name, data_dir, **kw)
            return copy.copy(cache[key])

        api.load_dataset = load
        return self

    def __exit__(self, *exc):
        self._api.load_dataset = self._orig


def _run_in_process(name: str, cfg: TrainConfig, sweep: Sweep, log) -> str:
    run_dir = sweep.out / "runs" / name
    (sweep.out / "logs").mkdir(parents=True, exist_ok=True)
    (sweep.out / "configs").mkdir(parents=True, exist_ok=True)
    save_config(cfg, sweep.out / "configs" / f"{name}.yaml")
    resume = (run_dir / "checkpoint.pt").is_file()
    t0 = time.perf_counter()
    status = "resumed" if resume else "ran"
    with open(sweep.out / "logs" / f"{name}.log", "a") as f:
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                if resume:
                    train(resume=run_dir, report=sweep.report, progress=False)
                else:
                    train(cfg, report=sweep.report)
        except Exception as e:  # noqa: BLE001  (one failed run does not stop the sweep)
            f.write(f"\n{type(e).__name__}: {e}\n")
            status = f"failed ({type(e).__name__}: {e}; see {sweep.out / 'logs' / (name + '.log')})"
    if log:
        log(f"  {name}: {status} in {time.perf_counter() - t0:.1f} s")
    return status


def run_sweep(sweep: Sweep, *, log=print) -> dict[str, Any]:
    """Run every missing run of ``sweep`` (each in its own process), then aggregate."""
    runs = sweep.runs()
    if log:
        log(
            f"sweep {sweep.name}: {len(runs)} runs "
            f"({len(sweep.methods)} methods × {len(sweep.noise)} noise × {len(sweep.seeds)} "
            f"seeds) in {sweep.out}"
        )

    def on_term(signum, frame):  # SIGTERM ends the sweep as Ctrl-C does
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, on_term) if main else None
    try:
        if sweep.in_process:
            with _SharedDatasets():
                status = {name: _run_one(name, cfg, sweep, log) for name, cfg in runs}
        elif sweep.jobs > 1:  # runs are independent processes; a pool of threads waits on them
            with ThreadPoolExecutor(sweep.jobs) as pool:
                done = pool.map(lambda r: _run_one(r[0], r[1], sweep, log), runs)
                status = dict(zip([n for n, _ in runs], done))
        else:
            status = {name: _run_one(name, cfg, sweep, log) for name, cfg in runs}
    except KeyboardInterrupt:
        stop_children(signal.SIGINT, wait_s=30.0)  # each run saves and says how to resume
        raise
    finally:
        stop_children()
        if main:
            signal.signal(signal.SIGTERM, old_term)
    agg = aggregate(sweep)
    agg["status"] = status
    return agg


def _run_row(sweep: Sweep, name: str, cfg: TrainConfig) -> dict[str, Any] | None:
    run_dir = sweep.out / "runs" / name
    p = run_dir / "summary.json"
    if not p.is_file() or _changed_keys(run_dir, cfg):  # never another config's results
        return None
    s = json.loads(p.read_text())
    recs = []
    m = run_dir / "metrics.jsonl"
    if m.is_file():
        recs = [json.loads(x) for x in m.read_text().splitlines() if x]
    times = [r["epoch_time_s"] for r in recs if r.get("epoch_time_s") is not None]
    cpu = [r["epoch_cpu_s"] for r in recs if r.get("epoch_cpu_s") is not None]
    oracle = name.startswith(ORACLE + "-")
    kind, rate = _oracle_noise(sweep, name) if oracle else (cfg.noise, cfg.noise_rate)
    return {
        "run": name,
        "method": ORACLE if oracle else cfg.method,
        "noise": kind,
        "noise_rate": rate,
        "seed": cfg.seed,
        "selected_test_acc": s.get("selected_test_acc"),
        "selected_epoch": s.get("selected_epoch"),
        "last_test_acc": s.get("last_test_acc"),
        "best_test_acc": s.get("best_test_acc"),
        "label_precision": s.get("last_label_precision"),
        "label_recall": s.get("last_label_recall"),
        "s_per_epoch": statistics.fmean(times) if times else None,
        "cpu_s_per_epoch": statistics.fmean(cpu) if cpu else None,
        "realized_noise_rate": s.get("realized_noise_rate"),
        "config_sha256": config_hash(cfg),
        "run_dir": str(run_dir),
    }


#: Summary columns: selected (the epoch of the best noisy-validation accuracy; needs
#: ``val_ratio``) and last are the headline; ``best_test_acc`` is the oracle (max over epochs
#: of test accuracy), kept for comparison with papers that report it.
METRICS = (
    "selected_test_acc",
    "last_test_acc",
    "best_test_acc",
    "label_precision",
    "label_recall",
    "s_per_epoch",
    "cpu_s_per_epoch",
)


def _mean_std(vals: list[float | None]) -> tuple[float | None, float | None]:
    v = [x for x in vals if x is not None]
    if not v:
        return None, None
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def aggregate(sweep: Sweep) -> dict[str, Any]:
    """Write results.csv, summary.csv and summary.md from the finished runs; return them."""
    rows = [r for name, cfg in sweep.runs() if (r := _run_row(sweep, name, cfg))]
    sweep.out.mkdir(parents=True, exist_ok=True)
    cols = [
        "run",
        "method",
        "noise",
        "noise_rate",
        "seed",
        *METRICS,
        "selected_epoch",
        "realized_noise_rate",
        "config_sha256",
        "run_dir",
    ]
    with open(sweep.out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["noise"], r["noise_rate"]), []).append(r)
    summary = []
    for (method, kind, rate), rs in groups.items():
        g: dict[str, Any] = {"method": method, "noise": kind, "noise_rate": rate, "n": len(rs)}
        for k in METRICS:
            g[f"{k}_mean"], g[f"{k}_std"] = _mean_std([r[k] for r in rs])
        summary.append(g)
    base = baseline_method()
    for g in summary:  # CPU time per epoch as a multiple of standard's under the same noise
        ref = [
            h["cpu_s_per_epoch_mean"]
            for h in summary
            if h["method"] == base
            and (h["noise"], h["noise_rate"]) == (g["noise"], g["noise_rate"])
        ]
        mine = g["cpu_s_per_epoch_mean"]
        g["cpu_x_standard"] = mine / ref[0] if ref and ref[0] and mine is not None else None
    scols = (
        ["method", "noise", "noise_rate", "n"]
        + [f"{k}_{s}" for k in METRICS for s in ("mean", "std")]
        + ["cpu_x_standard"]
    )
    with open(sweep.out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=scols)
        w.writeheader()
        w.writerows(summary)

    def pm(g, k, scale=100.0, digits=2):
        m, s = g[f"{k}_mean"], g[f"{k}_std"]
        return "–" if m is None else f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"

    lines = [
        f"# sweep {sweep.name}",
        "",
        f"{len(rows)} finished runs; mean ± std over seeds (n = runs). Accuracies are clean "
        "test accuracy (%): selected = at the epoch of the best noisy-validation accuracy "
        "(– without val_ratio), last = after the last epoch; oracle = max over epochs of "
        "test accuracy (model selection on the test set: not a result). LP/LR the last "
        "epoch's label precision/recall (%).",
        "",
        "| method | noise | n | selected acc | last acc | oracle: max test acc | LP | LR "
        "| s/epoch | CPU s/epoch | × standard |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in summary:
        x = g["cpu_x_standard"]
        lines.append(
            f"| {g['method']} | {g['noise']} {g['noise_rate']:g} | {g['n']} | "
            f"{pm(g, 'selected_test_acc')} | {pm(g, 'last_test_acc')} | "
            f"{pm(g, 'best_test_acc')} | "
            f"{pm(g, 'label_precision')} | {pm(g, 'label_recall')} | "
            f"{pm(g, 's_per_epoch', 1.0, 3)} | {pm(g, 'cpu_s_per_epoch', 1.0, 3)} | "
            f"{'–' if x is None else f'{x:.2f}'} |"
        )
    (sweep.out / "summary.md").write_text("\n".join(lines) + "\n")
    return {"rows": rows, "summary": summary, "markdown": "\n".join(lines), "out": str(sweep.out)}
