"""The Python API: ``noisyfit.train(...)`` runs one experiment and returns a ``TrainResult``.

The CLI calls exactly these functions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed as dist
from .config import TrainConfig, load_config, resolve_config, save_config
from .data.base import Dataset, load_dataset, stratified_subset
from .data.loader import DeviceLoader, Loader
from .data.memory import IN_MEMORY, as_dataset
from .engine.checkpoint import load_checkpoint, state_store
from .engine.ddp import on_main
from .engine.loop import FitResult, check_addons, fit
from .engine.run import RunLock, data_source, environment, run_state, write_json, write_samples_csv
from .engine.subset import estimate_noise_rate, subset_predictor, subset_trainer
from .errors import ConfigError, DataError, MissingFileError, RunError, RunExistsError
from .methods.base import METHODS, Context, build_method, check_needs, method_config
from .models import build_model
from .models.external import as_model_factory
from .noise import (
    CIFAR_N,
    NoiseManifest,
    expected_noise_rate,
    inject_noise,
    labels_sha256,
    read_index_file,
    realized_transition,
)
from .report import build_report


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
        run_dir: the run folder (None if nothing was written).
        summary: the final summary (also ``summary.json``).
        history: one dict per epoch (also ``metrics.jsonl``).
        manifest: the noise manifest.
        method: the trained method (its networks in ``method.models``).
    """

    run_dir: Path | None
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    manifest: NoiseManifest
    method: Any

    @property
    def test_acc(self) -> float | None:
        """Clean test accuracy after the last epoch."""
        return self.summary.get("last_test_acc")


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu")
    return dev


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


@dataclass
class PreparedData:
    """A dataset ready for training: noisy training labels, the truth, and the probe set.

    Attributes:
        dataset: the dataset with the probe samples removed from its training split.
        true: (N,) true labels of the training split, or None (real noise).
        noisy: the injected noise (labels + manifest).
        probe_index: (P,) indices (into the training split *before* removal) of the clean
            probe samples, or None.
        probe_x, probe_labels: the probe samples and their clean labels, or None.
        source_index: (N,) position of each training sample in the dataset's full training
            split (before the subset and the probe were taken out); saved as
            ``train_index.npy`` in the run folder and as ``dataset_index`` in label issues.
        val_x, val_labels: the noisy validation split (``--val-ratio``/``--val-file``) and its
            *given* (noisy) labels (V,), taken out of the training set after noise injection;
            None without one.  val_true: (V,) their true labels (None: real noise).
        val_index: (V,) their positions in the dataset's full training split (as
            ``source_index``), saved as ``val_index.npy``.
    """

    dataset: Dataset
    true: np.ndarray | None
    noisy: Any
    probe_index: np.ndarray | None = None
    probe_x: np.ndarray | None = None
    probe_labels: np.ndarray | None = None
    source_index: np.ndarray | None = None
    val_x: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    val_true: np.ndarray | None = None
    val_index: np.ndarray | None = None


def choose_probe(labels: np.ndarray, cfg: TrainConfig) -> np.ndarray | None:
    """Indices of the clean probe set: a user's file, or a seeded class-balanced draw of
    ``probe_per_class`` per class (or ``probe_ratio``·N in all, N·ratio // K per class, as IEG).
    """
    if cfg.probe_file:
        p = Path(cfg.probe_file)
        idx = np.unique(read_index_file(p, "probe indices"))
        if len(idx) == 0 or idx.min() < 0 or idx.max() >= len(labels):
            raise DataError(f"{p}: probe indices must lie in [0, {len(labels) - 1}]")
        return idx
    k = int(labels.max()) + 1
    per_class = cfg.probe_per_class or int(len(labels) * cfg.probe_ratio) // k
    if per_class <= 0:
        return None
    rng = np.random.default_rng(cfg.noise_seed + 7)
    picks = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ConfigError(
                f"class {c} has {len(members)} samples; cannot hold out "
                f"{per_class} per class as the probe"
            )
        picks.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picks))


def prepare_data(cfg: TrainConfig, dataset: Dataset | None = None) -> PreparedData:
    """Load the dataset (or take ``dataset``, an in-memory one), take the train subset, hold
    out the probe set, inject noise."""
    if dataset is not None:
        ds = dataclasses.replace(dataset)  # a shallow copy: the subset below rebinds x, labels
    else:
        ds = load_dataset(cfg.dataset, cfg.data_dir)
    source = np.arange(len(ds.labels))
    if cfg.train_subset is not None:
        source = stratified_subset(ds.labels, cfg.train_subset, seed=12345)
        ds.x, ds.labels = ds.x[source], ds.labels[source]
    if cfg.test_subset is not None:
        ds.test_x, ds.test_labels = ds.test_x[: cfg.test_subset], ds.test_labels[: cfg.test_subset]
    probe = choose_probe(ds.labels, cfg)
    px = pl = None
    if probe is not None:
        if not ds.labels_are_true and not cfg.probe_file:
            raise ConfigError(
                f"{ds.name}'s labels are not ground truth, so a random probe set would not be "
                "clean; give trusted indices with --probe-file"
            )
        px, pl = ds.x[probe], ds.labels[probe]
        rest = np.ones(len(ds.labels), dtype=bool)
        rest[probe] = False
        if not rest.any():
            raise ConfigError(
                f"the probe set takes all {len(rest)} training samples, so none is left to "
                "train on; hold out fewer (--probe-per-class, --probe-ratio, --probe-file)"
            )
        ds.x, ds.labels = ds.x[rest], ds.labels[rest]
        source = source[rest]
    true = ds.labels if ds.labels_are_true else None
    noisy = inject_noise(
        true,
        cfg.noise,
        cfg.noise_rate,
        num_classes=ds.num_classes,
        seed=cfg.noise_seed,
        mode=cfg.noise_mode,
        dataset=ds.name,
        superclass=ds.superclass,
        noise_file=cfg.noise_file,
        given_labels=ds.labels,
        source_index=source,
        data_dir=cfg.data_dir,
    )
    data = PreparedData(ds, true, noisy, probe, px, pl, source)
    val = choose_val(noisy.labels, source, cfg)
    if val is not None:
        _hold_out_val(data, val)
    return data


def choose_val(noisy_labels: np.ndarray, source: np.ndarray, cfg: TrainConfig) -> np.ndarray | None:
    """Positions (into the current training set) of the noisy validation split, or None.

    ``val_file``: dataset rows (as a run's ``val_index.npy``) that must be training samples;
    else ``round(val_ratio·N)`` samples, seeded by ``noise_seed``, stratified on the *given*
    (noisy) labels — no clean label is used to choose or to score the split.
    """
    if cfg.val_file:
        p = Path(cfg.val_file)
        if not p.is_file():
            raise MissingFileError(f"--val-file {p}: no such file; give a .npy or .txt of rows")
        rows = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, dtype=np.int64, ndmin=1)
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        pos = {int(r): i for i, r in enumerate(source)}
        missing = [int(r) for r in rows if int(r) not in pos]
        if missing or len(rows) == 0:
            raise DataError(
                f"{p}: {len(missing) or 'no'} validation row(s) "
                f"{'(e.g. ' + str(missing[:3]) + ') ' if missing else ''}are not training "
                "samples of this run (rows of the dataset's training split, after "
                "--train-subset and the probe); write them as a run's val_index.npy"
            )
        if len(rows) >= len(source):
            raise DataError(f"{p}: the validation split would leave no training sample")
        return np.sort(np.array([pos[int(r)] for r in rows], dtype=np.int64))
    n = int(round(cfg.val_ratio * len(noisy_labels)))
    if n <= 0:
        return None
    return stratified_subset(noisy_labels, n, seed=cfg.noise_seed + 101)


def _hold_out_val(data: PreparedData, val: np.ndarray) -> None:
    """Move the samples at ``val`` out of the training set into the validation split, and
    recompute the noise manifest over the samples that remain for training."""
    ds, noisy = data.dataset, data.noisy
    keep = np.ones(len(noisy.labels), dtype=bool)
    keep[val] = False
    data.val_x, data.val_labels = ds.x[val], noisy.labels[val]
    data.val_true = data.true[val] if data.true is not None else None
    data.val_index = data.source_index[val]
    ds.x, ds.labels = ds.x[keep], ds.labels[keep]
    data.source_index = data.source_index[keep]
    labels = noisy.labels[keep]
    m = noisy.manifest
    changes: dict[str, Any] = dict(num_samples=int(keep.sum()), sha256=labels_sha256(labels))
    if data.true is not None:
        data.true = data.true[keep]
        changes["realized_rate"] = float((labels != data.true).mean())
        changes["realized_T"] = np.round(
            realized_transition(data.true, labels, m.num_classes), 10
        ).tolist()
    data.noisy = type(noisy)(labels=labels, manifest=dataclasses.replace(m, **changes))


def _run_name(cfg: TrainConfig) -> str:
    measured = cfg.noise in ("none", "labels", "matrix") or cfg.noise in CIFAR_N
    rate = "" if measured else f"{cfg.noise_rate:g}"
    return (
        f"{cfg.dataset}-{cfg.method}-{cfg.noise}{rate}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )


def train(
    config: TrainConfig | str | Path | None = None,
    /,
    *,
    resume: str | Path | None = None,
    report: bool = True,
    weights: str | Path | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train one method on a noisy-label dataset; write a run folder; return the result.

    Args:
        config: a TrainConfig, a YAML file, or None (defaults: cnn-small on Fashion-MNIST with
            40% symmetric noise, 10 epochs).
        resume: a run folder to continue from its last checkpoint (its config is used).
        report: write ``<run_dir>/report/`` (HTML + PNGs) at the end; a failure only warns.
        weights: a local weights file for ``model="torchvision:<name>"``.
        **overrides: any TrainConfig field, e.g. ``train(epochs=5, method="standard")``.
            Besides names, ``dataset`` may be a torch ``Dataset`` (e.g. ``TensorDataset``),
            an ``(x, y)`` pair of arrays/tensors or a noisyfit ``Dataset``; ``model`` an
            ``nn.Module`` factory ``(num_classes, input_shape) -> nn.Module`` or an
            ``nn.Module`` (copied for each network). Such runs record ``in-memory`` /
            ``custom`` in config.yaml and cannot be resumed from the command line.

    Example::

        result = noisyfit.train(dataset="fashion-mnist", noise="pair", noise_rate=0.4)
        print(result.test_acc, result.run_dir)
    """
    dataset_obj = model_obj = None
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise RunError(
                f"{run_dir} is not a run folder (no config.yaml); pass the folder a run wrote, "
                "e.g. runs/<name>"
            )
        cfg = load_config(run_dir / "config.yaml")
        if overrides:
            cfg = cfg.replace(**{k: v for k, v in overrides.items() if k in ("progress",)})

        if run_state(run_dir) == "finished":
            with RunLock(run_dir):
                return finished_result(run_dir)
    else:
        dataset_obj, model_obj, overrides = split_objects(overrides, weights)
        cfg = resolve_config(config, **overrides)
        run_dir = Path(cfg.out) / (cfg.name or _run_name(cfg))
        if cfg.name is not None and dist.env_rank() == 0:
            check_new_run_dir(run_dir)  # fail early; checked again under the lock
    device = dist.init(resolve_device(cfg.device))  # torchrun (W > 1): join the group
    seed_everything(cfg.seed, cfg.deterministic)
    method_cls = METHODS.get(cfg.method)  # unknown names fail before anything is written
    method_config(method_cls, cfg.method_options)
    check_addons(method_cls, cfg)  # --mixup where the rule cannot take it: before any work
    # W > 1: rank 0 prepares first (downloads, caches), then the others (seeded: the same data)
    data = on_main(lambda: prepare_data(cfg, dataset_obj), share=lambda _: None)
    data = data if data is not None else prepare_data(cfg, dataset_obj)
    # what the method needs (probe, subsets, τ, data in memory): refused before anything is written
    check_needs(
        method_cls,
        cfg,
        train_loader_class(cfg),
        data.probe_index is not None,
        noise_rate=_nominal_tau(cfg, data) if method_cls.needs_noise_rate else None,
    )
    # W > 1: rank 0 alone creates, locks and writes the folder; the others get its path
    opened = on_main(
        lambda: open_run_dir(run_dir, new=resume is None, default_name=cfg.name is None),
        share=lambda lk: lk.run_dir,
    )
    lock, run_dir = (opened, opened.run_dir) if dist.is_main() else (None, opened)
    try:
        if resume is not None:
            done = resume_checks(run_dir, cfg, data.noisy.labels)
            if done is not None:
                return done
        return _train_in(run_dir, cfg, data, device, method_cls, resume, report, model_obj)
    finally:
        if lock is not None:
            lock.release()


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse a folder that holds a finished run or one to resume (RunExistsError)."""
    state = run_state(run_dir)
    if state == "finished":
        raise RunExistsError(
            f"{run_dir} holds a finished run (summary.json); choose another --name, or delete "
            f"the folder to train it again (--resume {run_dir} only reports it)"
        )
    if state == "resumable":
        raise RunExistsError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose "
            "another --name"
        )


def open_run_dir(run_dir: Path, *, new: bool, default_name: bool) -> Any:
    """Create (for a default name: a fresh folder, ``-2``, ``-3``… if taken) and lock the run
    folder; for a new run, check again under the lock that it holds nothing to keep."""
    if new and default_name:
        base, k = run_dir, 1
        while True:
            try:
                run_dir.mkdir(parents=True)
                break
            except FileExistsError:
                k += 1
                run_dir = base.with_name(f"{base.name}-{k}")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir).acquire()
    try:
        if new:
            check_new_run_dir(run_dir)
            for stale in ("incv_stage1.pt",):  # a stopped start's partial work is not ours
                (run_dir / stale).unlink(missing_ok=True)
    except BaseException:
        lock.release()
        raise
    lock.run_dir = run_dir
    return lock


#: Config keys that may differ between config.yaml and the checkpoint (they do not change
#: what is trained).
RESUME_FREE_KEYS = ("progress", "out", "name", "device", "data_dir", "compile")


def resume_checks(run_dir: Path, cfg: TrainConfig, labels: np.ndarray) -> TrainResult | None:
    """Before a resume: a finished run is reported untouched (its TrainResult); the folder's
    config.yaml must equal the checkpoint's config and its noisy labels the regenerated ones."""
    if run_state(run_dir) == "finished":  # finished while we waited for the lock
        return finished_result(run_dir)
    if not (run_dir / "checkpoint.pt").is_file() and (run_dir / "incv_stage1.pt").is_file():
        saved_cfg = cfg.to_dict()  # stopped in INCV's selection: it resumes from its file
    else:
        saved_cfg = load_checkpoint(run_dir / "checkpoint.pt").get("config") or {}
    now = cfg.to_dict()
    diff = [
        k
        for k in sorted(set(saved_cfg) | set(now))
        if k not in RESUME_FREE_KEYS and _norm(saved_cfg.get(k)) != _norm(now.get(k))
    ]
    if diff:
        said = ", ".join(f"{k} ({saved_cfg.get(k)!r} → {now.get(k)!r})" for k in diff)
        raise RunError(
            f"{run_dir / 'config.yaml'} differs from the checkpoint's config in {said}; "
            "restore config.yaml (the checkpoint's values), or start a new run with "
            "--config and another --name"
        )
    saved = run_dir / "noisy_labels.npy"
    try:
        same = np.array_equal(np.load(saved, allow_pickle=False), labels)
    except Exception as e:  # noqa: BLE001  (missing, truncated)
        raise RunError(f"{saved}: cannot read ({type(e).__name__}); the run cannot resume") from e
    if not same:
        raise RunError(
            f"{saved}: the noisy labels regenerated from the data and config.yaml differ from "
            "the saved ones (the data files or the noise file changed since the run started); "
            "restore them, or start a new run"
        )
    return None


def finished_result(run_dir: Path) -> TrainResult:
    """The TrainResult of a finished run folder, read from its files (nothing is written)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    hist_file = run_dir / "metrics.jsonl"
    history = [json.loads(x) for x in hist_file.read_text().splitlines() if x.strip()]
    manifest = NoiseManifest(**json.loads((run_dir / "noise.json").read_text()))
    print(
        f"{run_dir}: the run finished before ({summary.get('epochs')} epochs); nothing to "
        "resume, the folder is left as it is"
    )
    return TrainResult(run_dir, summary, history, manifest, None)


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _train_in(
    run_dir, cfg, data, device, method_cls, resume, report, model_obj=None
) -> TrainResult:
    """The run itself, in a locked run folder."""
    run = build_run(cfg, data=data, model=model_obj, device=device, run_dir=run_dir)
    res, summary = run_in_folder(run, run_dir, resume=resume is not None, report=report)
    return TrainResult(run_dir, summary, res.history, data.noisy.manifest, run.method)


def start_run_folder(
    run: Run, run_dir: Path, *, resume: bool = False, files: dict[str, Any] | None = None
) -> None:
    """Write what a run folder holds before training (the layout of
    :mod:`noisyfit.engine.run`): config.yaml (not on resume), env.json, and for a prepared
    dataset noise.json, data_source.json, noisy_labels.npy, train_index.npy, data.json,
    val_index.npy, probe_indices.npy and probe.json. ``files``: more JSON files by name
    (e.g. ``ieg_args.json``); a ``probe.json`` entry is merged into the written one."""
    cfg, data = run.cfg, run.data
    files = dict(files or {})
    probe = files.pop("probe.json", None)
    if not resume:
        save_config(cfg, run_dir / "config.yaml")
    write_json(run_dir / "env.json", environment(run.device))
    for name, obj in files.items():
        write_json(run_dir / name, obj)
    if data is not None:
        ds, noisy = data.dataset, data.noisy
        write_json(run_dir / "noise.json", noisy.manifest.to_dict())
        write_json(run_dir / "data_source.json", data_source(ds, cfg))
        np.save(run_dir / "noisy_labels.npy", noisy.labels)
        np.save(run_dir / "train_index.npy", data.source_index)
        write_json(  # what `noisyfit predict` needs to rebuild the inputs' layout and scale
            run_dir / "data.json",
            {
                "name": ds.name,
                "class_names": list(ds.class_names),
                "input_shape": list(ds.input_shape),
                "mean": list(ds.mean),
                "std": list(ds.std),
            },
        )
        if data.val_index is not None:
            np.save(run_dir / "val_index.npy", data.val_index)
        if data.probe_index is not None:
            np.save(run_dir / "probe_indices.npy", data.probe_index)
            probe = {
                "size": len(data.probe_index),
                "per_class": np.bincount(data.probe_labels, minlength=ds.num_classes).tolist(),
                "source": cfg.probe_file or "seeded class-balanced draw before noise injection",
                "indices_file": "probe_indices.npy (indices into the training split after "
                "--train-subset, before the probe is taken out)",
                **(probe or {}),
            }
    if probe is not None:
        write_json(run_dir / "probe.json", probe)


def finish_run_folder(
    run: Run,
    run_dir: Path,
    res: FitResult,
    wall: float,
    *,
    report: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write what a run folder holds after training: the method's artifacts, samples.csv,
    summary.json (:func:`summarize`'s schema; ``extra``: optional keys added to it) and the
    report. Returns the summary."""
    data = run.data
    for fname, arr in run.method.artifacts().items():  # e.g. F-correction's t_hat.npy
        np.save(run_dir / fname, np.asarray(arr))
    v = res.verdicts
    given = data.noisy.labels if data is not None else run.train.labels.cpu().numpy()
    write_samples_csv(
        run_dir / "samples.csv",
        given,
        data.true if data is not None else None,
        v.verdict.cpu().numpy(),
        v.label.cpu().numpy(),
        v.score.cpu().numpy(),
        v.weight.cpu().numpy(),
    )
    manifest = data.noisy.manifest if data is not None else None
    summary = summarize(run.cfg, res.history, manifest, run_dir, wall, run.ctx.noise_rate)
    summary.update(extra or {})
    write_json(run_dir / "summary.json", summary)
    if report:
        write_report(run_dir, data)
    return summary


def run_in_folder(
    run: Run,
    run_dir: Path,
    *,
    resume: bool = False,
    report: bool = True,
    describe: str = "",
    files: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[FitResult, dict[str, Any]]:
    """Train a built run in ``run_dir`` (the one run-folder writer): the files before
    (:func:`start_run_folder`), ``fit``, the files after (:func:`finish_run_folder`).
    ``resume``: continue from the folder's checkpoint if it has one. Returns the fit result
    and the summary. Under torchrun (W > 1) rank 0 alone writes the folder."""
    main = dist.is_main()
    if main:
        start_run_folder(run, run_dir, resume=resume, files=files)
    t0 = time.perf_counter()
    res: FitResult = fit(
        run.method,
        run.train,
        run.test,
        run.cfg,
        true_labels=run.true_labels,
        run_dir=run_dir,
        resume=resume and (run_dir / "checkpoint.pt").is_file(),
        describe=describe,
        val=run.ctx.val,
    )
    wall = time.perf_counter() - t0
    if not main:
        manifest = run.data.noisy.manifest if run.data is not None else None
        return res, summarize(run.cfg, res.history, manifest, run_dir, wall, run.ctx.noise_rate)
    summary = finish_run_folder(run, run_dir, res, wall, report=report, extra=extra)
    return res, summary


def report_run(
    run_dir: str | Path, *, top: int = 32, log=print, data: PreparedData | None = None
) -> Path:
    """``noisyfit report``: :func:`noisyfit.report.build_report` of a run folder, with the
    data (``data``, or prepared again from its config.yaml) and its network's predictions."""
    return build_report(
        run_dir, top=top, log=log, data=data, load_data=prepare_data, pred_probs=run_pred_probs
    )


def run_pred_probs(run_dir: Path, cfg: TrainConfig, data: PreparedData) -> np.ndarray:
    """(N, K) in-sample probabilities of a run's main network (the checkpoint's first model)
    over its training samples, in index order (un-augmented, on the CPU)."""
    ck = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    states = ck["models"]
    state = states.get("net") or next(iter(states.values()))
    run = build_run(cfg.replace(device="cpu"), data=data, device=torch.device("cpu"), method=False)
    model = run.ctx.make_model()
    model.load_state_dict(state)
    return run.ctx.predict(model).numpy()


def write_report(run_dir: Path, data: PreparedData | None = None) -> Path | None:
    """``noisyfit report`` at the end of a run; a failure only warns (the run stands).
    ``NOISYFIT_REPORT=0`` in the environment turns it off everywhere (e.g. in test suites)."""
    if os.environ.get("NOISYFIT_REPORT", "1") == "0":
        return None
    try:
        return report_run(run_dir, log=None, data=data)
    except Exception as e:  # noqa: BLE001
        warnings.warn(
            f"the report of {run_dir} failed ({type(e).__name__}: {e}); try "
            f"`noisyfit report {run_dir}`",
            stacklevel=2,
        )
        return None


def split_objects(
    overrides: dict[str, Any], weights: str | Path | None = None
) -> tuple[Dataset | None, Any, dict[str, Any]]:
    """(dataset object, model factory, the remaining overrides): a ``dataset`` or ``model``
    override that is not a name is taken out, and the config records ``in-memory`` /
    ``custom`` (or the torchvision name) in its place."""
    overrides = dict(overrides)
    ds = overrides.get("dataset")
    dataset_obj = None
    if ds is not None and not isinstance(ds, str):
        dataset_obj = as_dataset(ds)
        overrides["dataset"] = ds.name if isinstance(ds, Dataset) else IN_MEMORY
    m = overrides.get("model")
    model_obj = as_model_factory(m, weights) if m is not None else None
    if model_obj is not None:
        overrides["model"] = m if isinstance(m, str) else "custom"
    return dataset_obj, model_obj, overrides


@dataclass
class Loaders:
    """The loaders of a run, for data that is not a prepared in-memory dataset (e.g.
    WebVision's image folders): ``train`` (given labels, shuffled, augmented), ``test``
    (clean, None: no evaluation), ``probe`` (clean probe set or None), ``val`` (noisy
    validation split or None); ``num_classes`` K and ``input_shape`` of the networks."""

    train: Any
    num_classes: int
    input_shape: tuple[int, ...]
    test: Any = None
    probe: Any = None
    val: Any = None


@dataclass
class Run:
    """A built run: what :func:`~noisyfit.engine.loop.fit` runs on.

    Attributes:
        cfg: the run's config.  device: where it trains.
        data: the prepared dataset (None when the loaders were given).
        ctx: the method Context (loaders, ``make_model``, ``train_model``, ``predict``, τ).
        method: the built method (None with ``build_run(..., method=False)``).
        train, test: the training loader (= ``ctx.loader``) and the clean test loader (or None).
        true_labels: (N,) int64 truth of the training samples on the device, or None.
    """

    cfg: TrainConfig
    device: torch.device
    data: PreparedData | None
    ctx: Context
    method: Any
    train: Any
    test: Any
    true_labels: torch.Tensor | None


def data_loaders(cfg: TrainConfig, data: PreparedData, device: torch.device) -> Loaders:
    """The loaders of a prepared dataset: training (given labels, ``cfg.augment``), clean
    test, probe (augmented as training) and the noisy validation split (no augmentation)."""
    ds = data.dataset
    kw = dict(mean=ds.mean, std=ds.std, normalize=cfg.normalize, device=device)
    train = DeviceLoader(
        ds.x,
        data.noisy.labels,
        batch_size=cfg.batch_size,
        augment=cfg.augment,
        shuffle=True,
        seed=cfg.seed,
        **kw,
    )
    eval_batch = cfg.eval_batch_for(device)
    test = (
        DeviceLoader(ds.test_x, ds.test_labels, batch_size=eval_batch, shuffle=False, **kw)
        if len(ds.test_x)
        else None
    )
    probe = None
    if data.probe_index is not None:
        probe = DeviceLoader(
            data.probe_x,
            data.probe_labels,
            batch_size=cfg.batch_size,
            augment=cfg.augment,
            shuffle=True,
            seed=cfg.seed + 1,
            **kw,
        )
    val = None
    if data.val_x is not None:  # the noisy validation split: given labels, no augmentation
        val = DeviceLoader(data.val_x, data.val_labels, batch_size=eval_batch, shuffle=False, **kw)
    return Loaders(train, ds.num_classes, tuple(ds.input_shape), test, probe, val)


def build_run(
    cfg: TrainConfig,
    *,
    data: PreparedData | None = None,
    dataset: Dataset | None = None,
    model: Any = None,
    loaders: Loaders | None = None,
    device: torch.device | None = None,
    run_dir: Path | None = None,
    method: bool = True,
) -> Run:
    """Build a run — the one place every entry point builds one (``noisyfit train``, ``ieg``
    (CIFAR and WebVision), ``selfie-cli``, ``demo``, ``find-issues``, ``clean``, ``theory``,
    ``reproduce``, ``bench``, :class:`~noisyfit.RobustClassifier`, the benchmarks).

    Data: ``data`` (prepared already), else ``loaders`` (e.g. WebVision's folder loaders), else
    the seeded :func:`prepare_data` of ``cfg`` (or of ``dataset``, an in-memory Dataset).
    Then the loaders, ``make_model`` (``model``: a factory ``(num_classes, input_shape) ->
    nn.Module`` instead of ``cfg.model``; channels_last and ``cfg.compile`` on CUDA), the
    Context with its ``train_model``/``predict`` services, τ (``ctx.noise_rate``: resolved,
    and estimated with ``--tau auto`` into ``run_dir/tau.json``, for methods that need one)
    and the method (``method=False``: none, for commands that only use the Context).
    """
    device = device or resolve_device(cfg.device)
    if data is None and loaders is None:
        seed_everything(cfg.seed, cfg.deterministic)
        data = prepare_data(cfg, dataset)
    if loaders is None:
        loaders = data_loaders(cfg, data, device)
    k, shape = loaders.num_classes, tuple(loaders.input_shape)

    def make_model() -> torch.nn.Module:
        if model is not None:
            m = model(k, shape).to(device)
        else:
            m = build_model(cfg.model, k, shape).to(device)
        if device.type == "cuda" and len(shape) == 3:
            m = m.to(memory_format=torch.channels_last)
        if cfg.compile and device.type == "cuda":
            m.forward = torch.compile(m.forward)
        return m

    ctx = Context(
        num_classes=k,
        num_samples=len(loaders.train.labels),
        input_shape=shape,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        device=device,
        make_model=make_model,
        loader=loaders.train,
        probe=loaders.probe,
        seed=cfg.seed,
        config=cfg,
        val=loaders.val,
    )
    ctx.train_model = subset_trainer(ctx)
    ctx.predict = subset_predictor(ctx)
    ctx.run_dir = run_dir  # where multi-stage methods checkpoint their stages
    ctx.stage_state = lambda name: state_store(run_dir / name if run_dir is not None else None)
    built = None
    if method:
        method_cls = METHODS.get(cfg.method)
        # what the method needs, against the loaders it gets (WebVision's folder loader too)
        check_needs(
            method_cls,
            cfg,
            loaders.train,
            loaders.probe,
            noise_rate=_nominal_tau(cfg, data) if method_cls.needs_noise_rate else None,
        )
        ctx.noise_rate = (
            resolve_tau(cfg, data, ctx, run_dir)
            if method_cls.needs_noise_rate
            else _nominal_tau(cfg, data)
        )
        built = build_method(cfg.method, ctx, cfg.method_options)
    true = data.true if data is not None else None
    true_t = torch.as_tensor(true, device=device) if true is not None else None
    return Run(cfg, device, data, ctx, built, loaders.train, loaders.test, true_t)


def train_loader_class(cfg: TrainConfig) -> type[Loader]:
    """The class of the training loader :func:`data_loaders` builds for ``cfg`` (its
    capabilities, ``supports_subsets`` and ``in_memory``, are class attributes, so a run's
    needs are checked before the data is loaded onto the device)."""
    return DeviceLoader


def build_context(
    cfg: TrainConfig,
    data: PreparedData,
    device: torch.device | None = None,
    *,
    model: Any = None,
) -> tuple[Context, Any]:
    """The Context and clean test loader of :func:`build_run` without a method (for code
    that trains outside a run)."""
    run = build_run(cfg, data=data, device=device, model=model, method=False)
    return run.ctx, run.test


def _nominal_tau(cfg: TrainConfig, data: PreparedData) -> float | None:
    """The expected wrong-label rate of the injected noise (None where unknown)."""
    if data is None or data.true is None:
        return None
    if cfg.noise in ("labels", "matrix") or cfg.noise in CIFAR_N:
        return data.noisy.manifest.realized_rate
    ds = data.dataset
    return expected_noise_rate(
        cfg.noise,
        cfg.noise_rate,
        ds.num_classes,
        dataset=ds.name,
        superclass=ds.superclass,
        path=cfg.noise_file,
    )


def resolve_tau(cfg: TrainConfig, data: PreparedData, ctx: Context, run_dir: Path) -> float:
    """τ for methods that need one: the flag, the nominal rate, or an estimate (``auto``,
    and whenever no truth exists), saved in ``tau.json`` so a resumed run reuses it."""
    if isinstance(cfg.tau, float):
        return cfg.tau
    nominal = _nominal_tau(cfg, data)
    if cfg.tau is None and nominal is not None:
        return nominal
    saved = run_dir / "tau.json" if run_dir is not None else None
    if saved is not None and saved.is_file():
        return json.loads(saved.read_text())["tau"]
    kind = cfg.noise if cfg.noise in ("symmetric", "pair", "uniform") else "symmetric"
    est = estimate_noise_rate(ctx, kind=kind, epochs=cfg.tau_epochs, seed=cfg.seed)
    est["nominal"] = nominal
    if saved is not None and dist.is_main():
        write_json(saved, est)
    print(
        f"estimated noise rate τ = {est['tau']:.3f} (agreement {est['agreement']:.3f}; "
        f"nominal {nominal})"
    )
    return est["tau"]


def select_epoch(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Model selection on the noisy validation split: the epoch of the best ``val_acc``
    (the first on ties), its clean test accuracy, and the test-set oracle.

    Returns ``selected_epoch`` (1-based), ``selected_val_acc``, ``selected_test_acc`` (None
    without a validation split), ``last_test_acc``, and ``best_test_acc``/``best_epoch``: the
    *oracle*, max over epochs of test accuracy — not a model selection a user can make.
    """
    tests = [(h["epoch"], h["test_acc"]) for h in history if h.get("test_acc") is not None]
    vals = [(h["epoch"], h["val_acc"], h.get("test_acc")) for h in history if "val_acc" in h]
    out: dict[str, Any] = {
        "selected_epoch": None,
        "selected_val_acc": None,
        "selected_test_acc": None,
        "last_test_acc": tests[-1][1] if tests else None,
        "best_test_acc": max(a for _, a in tests) if tests else None,
        "best_epoch": max(tests, key=lambda t: t[1])[0] if tests else None,
    }
    if vals:
        ep, acc, test = max(vals, key=lambda t: t[1])  # max keeps the first of equal values
        out.update(selected_epoch=ep, selected_val_acc=acc, selected_test_acc=test)
    return out


def summarize(cfg, history, manifest, run_dir, wall, tau) -> dict[str, Any]:
    """The final summary (``summary.json``, one schema for every command): selected (best
    noisy-validation epoch) and last clean test accuracy, loss and top-5, the test-set oracle
    (``best_test_acc``), noise (``manifest`` None: no injected noise known), timing.
    Commands may add optional keys (``noisyfit ieg``: ``ieg``, its seed's names)."""
    sel = select_epoch(history)
    last = history[-1] if history else {}
    return {
        "dataset": cfg.dataset,
        "model": cfg.model,
        "method": cfg.method,
        "noise": cfg.noise,
        # no nominal rate where no noise was injected (--noise none: the user's own labels)
        "nominal_noise_rate": None if cfg.noise == "none" else cfg.noise_rate,
        "realized_noise_rate": manifest.realized_rate if manifest is not None else None,
        "tau": tau,
        "epochs": len(history),
        "val_ratio": cfg.val_ratio if not cfg.val_file else None,
        "val_file": cfg.val_file,
        **sel,
        "last_test_loss": last.get("test_loss"),
        "last_test_top5": last.get("test_top5"),
        "last_label_precision": last.get("label_precision"),
        "last_label_recall": last.get("label_recall"),
        "mean_images_per_s": float(
            np.mean([h["images_per_s"] for h in history if h.get("images_per_s")])
        )
        if history
        else None,
        "wall_time_s": wall,
        "run_dir": str(run_dir),
    }


def load_run_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The last checkpoint of a run folder (``weights_only`` load)."""
    return load_checkpoint(Path(run_dir) / "checkpoint.pt")
