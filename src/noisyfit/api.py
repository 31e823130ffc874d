"""The Python API: ``noisyfit.train(...)`` runs one experiment and returns a ``TrainResult``.

The CLI calls exactly these functions.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import TrainConfig, load_config, resolve_config, save_config
from .data.base import Dataset, load_dataset
from .data.loader import DeviceLoader
from .engine.checkpoint import load_checkpoint
from .engine.loop import FitResult, check_addons, fit
from .engine.run import environment, write_json, write_samples_csv
from .methods.base import METHODS, Context, build_method, method_config
from .models import build_model
from .noise import CIFAR_N, NoiseManifest, expected_noise_rate, inject_noise


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
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    return dev


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a seeded subset of ``n`` samples with the class proportions of ``labels``."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    # interleave classes in order of their random rank, then take the first n
    ranks = np.empty(len(labels))
    for c in np.unique(labels):
        members = order[labels[order] == c]
        ranks[members] = (np.arange(len(members)) + rng.random()) / len(members)
    return np.sort(np.argsort(ranks, kind="stable")[:n])


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
    """

    dataset: Dataset
    true: np.ndarray | None
    noisy: Any
    probe_index: np.ndarray | None = None
    probe_x: np.ndarray | None = None
    probe_labels: np.ndarray | None = None
    source_index: np.ndarray | None = None


def choose_probe(labels: np.ndarray, cfg: TrainConfig) -> np.ndarray | None:
    """Indices of the clean probe set: a user's file, or a seeded class-balanced draw of
    ``probe_per_class`` per class (or ``probe_ratio``·N in all, N·ratio // K per class, as IEG).
    """
    if cfg.probe_file:
        p = Path(cfg.probe_file)
        idx = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, dtype=np.int64, ndmin=1)
        idx = np.unique(np.asarray(idx, dtype=np.int64))
        if len(idx) == 0 or idx.min() < 0 or idx.max() >= len(labels):
            raise ValueError(f"{p}: probe indices must lie in [0, {len(labels) - 1}]")
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
            raise ValueError(
                f"class {c} has {len(members)} samples; cannot hold out "
                f"{per_class} per class as the probe"
            )
        picks.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picks))


def prepare_data(cfg: TrainConfig) -> PreparedData:
    """Load the dataset, take the train subset, hold out the probe set, inject noise."""
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
            raise ValueError(
                f"{ds.name}'s labels are not ground truth, so a random probe set would not be "
                "clean; give trusted indices with --probe-file"
            )
        px, pl = ds.x[probe], ds.labels[probe]
        rest = np.ones(len(ds.labels), dtype=bool)
        rest[probe] = False
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
    return PreparedData(ds, true, noisy, probe, px, pl, source)


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
    **overrides: Any,
) -> TrainResult:
    """Train one method on a noisy-label dataset; write a run folder; return the result.

    Args:
        config: a TrainConfig, a YAML file, or None (defaults: cnn-small on Fashion-MNIST with
            40% symmetric noise, 10 epochs).
        resume: a run folder to continue from its last checkpoint (its config is used).
        report: write ``<run_dir>/report/`` (HTML + PNGs) at the end; a failure only warns.
        **overrides: any TrainConfig field, e.g. ``train(epochs=5, method="standard")``.

    Example::

        result = noisyfit.train(dataset="fashion-mnist", noise="pair", noise_rate=0.4)
        print(result.test_acc, result.run_dir)
    """
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml)")
        cfg = load_config(run_dir / "config.yaml")
        if overrides:
            cfg = cfg.replace(**{k: v for k, v in overrides.items() if k in ("progress",)})
    else:
        cfg = resolve_config(config, **overrides)
        run_dir = Path(cfg.out) / (cfg.name or _run_name(cfg))
        if (run_dir / "checkpoint.pt").exists():
            raise FileExistsError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir}, or "
                "choose another --name"
            )
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed, cfg.deterministic)
    from .methods import _builtin  # noqa: F401  (registers the built-in methods)

    method_cls = METHODS.get(cfg.method)  # unknown names fail before anything is written
    method_config(method_cls, cfg.method_options)
    check_addons(method_cls, cfg)  # --mixup where the rule cannot take it: before any work
    data = prepare_data(cfg)
    ds, true, noisy = data.dataset, data.true, data.noisy
    if method_cls.needs_probe and data.probe_index is None:
        raise ValueError(
            f"method {cfg.method!r} needs a clean probe set: pass "
            "--probe-per-class 10 (or --probe-ratio, --probe-file)"
        )
    if resume is not None:
        saved = np.load(run_dir / "noisy_labels.npy")
        if not np.array_equal(saved, noisy.labels):
            raise RuntimeError(f"{run_dir}: the noisy labels differ from the saved ones")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    write_json(run_dir / "env.json", environment(device))
    write_json(run_dir / "noise.json", noisy.manifest.to_dict())
    np.save(run_dir / "noisy_labels.npy", noisy.labels)
    np.save(run_dir / "train_index.npy", data.source_index)
    ctx, test_loader = build_context(cfg, data, device)
    train_loader = ctx.loader
    if data.probe_index is not None:
        np.save(run_dir / "probe_indices.npy", data.probe_index)
        write_json(
            run_dir / "probe.json",
            {
                "size": len(data.probe_index),
                "per_class": np.bincount(data.probe_labels, minlength=ds.num_classes).tolist(),
                "source": cfg.probe_file or "seeded class-balanced draw before noise injection",
                "indices_file": "probe_indices.npy (indices into the training split after "
                "--train-subset, before the probe is taken out)",
            },
        )
    ctx.noise_rate = (
        resolve_tau(cfg, data, ctx, run_dir)
        if method_cls.needs_noise_rate
        else _nominal_tau(cfg, data)
    )
    tau = ctx.noise_rate
    method = build_method(cfg.method, ctx, cfg.method_options)
    true_t = torch.as_tensor(true, device=device) if true is not None else None
    t0 = time.perf_counter()
    res: FitResult = fit(
        method,
        train_loader,
        test_loader,
        cfg,
        true_labels=true_t,
        run_dir=run_dir,
        resume=resume is not None,
        describe="",
    )
    wall = time.perf_counter() - t0
    v = res.verdicts
    write_samples_csv(
        run_dir / "samples.csv",
        noisy.labels,
        true,
        v.verdict.cpu().numpy(),
        v.label.cpu().numpy(),
        v.score.cpu().numpy(),
        v.weight.cpu().numpy(),
    )
    summary = summarize(cfg, res.history, noisy.manifest, run_dir, wall, tau)
    write_json(run_dir / "summary.json", summary)
    if report:
        write_report(run_dir, data)
    return TrainResult(run_dir, summary, res.history, noisy.manifest, method)


def write_report(run_dir: Path, data: PreparedData | None = None) -> Path | None:
    """``noisyfit report`` at the end of a run; a failure only warns (the run stands).
    ``NOISYFIT_REPORT=0`` in the environment turns it off everywhere (e.g. in test suites)."""
    import os
    import warnings

    if os.environ.get("NOISYFIT_REPORT", "1") == "0":
        return None
    try:
        from .report import build_report

        return build_report(run_dir, log=None, data=data)
    except Exception as e:  # noqa: BLE001
        warnings.warn(
            f"the report of {run_dir} failed ({type(e).__name__}: {e}); try "
            f"`noisyfit report {run_dir}`",
            stacklevel=2,
        )
        return None


def build_context(
    cfg: TrainConfig, data: PreparedData, device: torch.device | None = None
) -> tuple[Context, DeviceLoader]:
    """The method Context of a prepared dataset (training and probe loaders, ``make_model``,
    ``train_model``) and the clean test loader: what :func:`train` runs on, for commands that
    train outside a run (``theory``, ``clean``, ``ieg --mode evaluation``)."""
    device = device or resolve_device(cfg.device)
    ds = data.dataset
    kw = dict(mean=ds.mean, std=ds.std, normalize=cfg.normalize, device=device)
    train_loader = DeviceLoader(
        ds.x,
        data.noisy.labels,
        batch_size=cfg.batch_size,
        augment=cfg.augment,
        shuffle=True,
        seed=cfg.seed,
        **kw,
    )
    test_loader = DeviceLoader(
        ds.test_x, ds.test_labels, batch_size=cfg.eval_batch_size, shuffle=False, **kw
    )
    probe_loader = None
    if data.probe_index is not None:
        probe_loader = DeviceLoader(
            data.probe_x,
            data.probe_labels,
            batch_size=cfg.batch_size,
            augment=cfg.augment,
            shuffle=True,
            seed=cfg.seed + 1,
            **kw,
        )

    def make_model() -> torch.nn.Module:
        m = build_model(cfg.model, ds.num_classes, ds.input_shape).to(device)
        if device.type == "cuda" and len(ds.input_shape) == 3:
            m = m.to(memory_format=torch.channels_last)
        if cfg.compile and device.type == "cuda":
            m.forward = torch.compile(m.forward)
        return m

    ctx = Context(
        num_classes=ds.num_classes,
        num_samples=len(ds),
        input_shape=ds.input_shape,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        device=device,
        make_model=make_model,
        loader=train_loader,
        probe=probe_loader,
        seed=cfg.seed,
        config=cfg,
    )
    ctx.train_model = subset_trainer(ctx)
    return ctx, test_loader


def _nominal_tau(cfg: TrainConfig, data: PreparedData) -> float | None:
    """The expected wrong-label rate of the injected noise (None where unknown)."""
    if data.true is None:
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
    import json

    if isinstance(cfg.tau, float):
        return cfg.tau
    nominal = _nominal_tau(cfg, data)
    if cfg.tau is None and nominal is not None:
        return nominal
    saved = run_dir / "tau.json"
    if saved.is_file():
        return json.loads(saved.read_text())["tau"]
    from .analysis.noise_rate import estimate_noise_rate

    kind = cfg.noise if cfg.noise in ("symmetric", "pair", "uniform") else "symmetric"
    est = estimate_noise_rate(ctx, kind=kind, epochs=cfg.tau_epochs, seed=cfg.seed)
    est["nominal"] = nominal
    write_json(saved, est)
    print(
        f"estimated noise rate τ = {est['tau']:.3f} (agreement {est['agreement']:.3f}; "
        f"nominal {nominal})"
    )
    return est["tau"]


def subset_trainer(ctx: Context):
    """The ``ctx.train_model`` service: train a fresh network with plain cross-entropy on a
    subset of the training set (see :class:`~noisyfit.methods.base.Context`)."""

    def train_model(
        mask=None, *, epochs=None, init_state=None, labels=None, describe="", **changes
    ) -> torch.nn.Module:
        from .methods.standard import Standard

        cfg = ctx.config.replace(
            epochs=epochs or ctx.config.epochs, checkpoint=False, ema=0.0, mixup=0.0, **changes
        )  # the run's add-ons (--ema, --mixup) are for the method's own training only
        loader = ctx.loader if labels is None else ctx.loader.with_labels(labels)
        if mask is not None:
            loader = loader.subset(torch.as_tensor(mask, device=ctx.device))
        net = Standard(Standard.Config(), ctx)
        if init_state is not None:
            net.models["net"].load_state_dict(init_state)
        fit(net, loader, None, cfg, describe=describe)
        return net.models["net"]

    return train_model


def summarize(cfg, history, manifest, run_dir, wall, tau) -> dict[str, Any]:
    """The final summary: best and last clean test accuracy, noise, timing."""
    accs = [h["test_acc"] for h in history if h.get("test_acc") is not None]
    last = history[-1] if history else {}
    return {
        "dataset": cfg.dataset,
        "model": cfg.model,
        "method": cfg.method,
        "noise": cfg.noise,
        "nominal_noise_rate": cfg.noise_rate,
        "realized_noise_rate": manifest.realized_rate,
        "tau": tau,
        "epochs": len(history),
        "last_test_acc": accs[-1] if accs else None,
        "best_test_acc": max(accs) if accs else None,
        "best_epoch": (int(np.argmax(accs)) + 1) if accs else None,
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
