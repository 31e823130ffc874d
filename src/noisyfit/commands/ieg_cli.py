"""``noisyfit ieg``: the IEG repository's command line (``ieg.main``) on noisyfit's engine.

The seed's names work as written::

    noisyfit ieg --dataset cifar100_uniform_0.8 --network-name wrn28-10 --checkpoint-path runs/ieg
    noisyfit ieg --dataset cifar10_asymmetric_0.4 --network-name resnet29 \\
        --probe-dataset-hold-ratio 0.002 --checkpoint-path runs/ieg
    noisyfit ieg --dataset cifar100_uniform_0.8 --method l2r --checkpoint-path runs/l2r
    noisyfit ieg --dataset cifar100_uniform_0.8 --method supervised --checkpoint-path runs/sup
    noisyfit ieg --dataset cifar100_uniform_0.8 --mode evaluation --checkpoint-path runs/ieg
    noisyfit ieg --dataset webvisionmini --network-name resnet50 --ce-factor 4 \\
        --consistency-factor 8 --batch-size 8 --use-imagenet-as-eval --data-dir /data/webvision

``--dataset`` is ``<dataset>_<noise>_<ratio>`` (any registered dataset: ``cifar10``,
``cifar100``, ``fashion-mnist``, ``synthetic``...; noise ``uniform`` = IEG's draw from all K
classes, ``asymmetric``, or any other noise kind), or ``webvisionmini[_<probe per class>]``.
The run folder is ``<checkpoint-path>/<dataset>_p<ratio>/<network-name>`` as in IEG's
``main.py``; training continues from its checkpoint when one exists, ``--mode evaluation``
restores it (or the file ``--restore``) and reports top-1/top-5 accuracy with the EMA weights.

Methods: ``ieg`` and ``l2r`` are the registered methods; ``supervised`` is ``standard`` inside
this pipeline (EMA 0.999 + the cosine-restart schedule), a preset, not a method. Every method
trains on the same noisy set with the probe held out (IEG's split). ``--max-iteration`` is
rounded up to whole epochs; the cosine-restart schedule's first cycle is
``--decay-steps`` (IEG's 500).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tyro

from ..api import Loaders, build_run, prepare_data, resolve_device, run_in_folder, seed_everything
from ..cli import command
from ..config import TrainConfig
from ..data import webvision as _webvision  # noqa: F401  (registers webvision-mini)
from ..data import webvision as wv
from ..engine.checkpoint import load_checkpoint
from ..engine.evaluate import evaluate
from ..engine.run import RunLock
from ..errors import ConfigError, MissingFileError

NETWORK_WEIGHT_DECAY = {"wrn28-10": 5e-4, "resnet29": 1e-4, "resnet50": 1e-4}


@dataclass
class IEGArgs:
    """IEG's command line (google-research/ieg ``main.py`` flags; defaults of ``options.py``)."""

    dataset: str = "cifar100_uniform_0.8"
    """``<dataset>_<noise>_<ratio>`` (cifar100_uniform_0.8, cifar10_asymmetric_0.4) or
    ``webvisionmini[_<probe images per class>]``."""
    network_name: str = "wrn28-10"
    """wrn28-10, resnet29, resnet50 or any registered model."""
    method: Literal["ieg", "l2r", "supervised"] = "ieg"
    mode: Literal["train", "evaluation"] = "train"
    max_iteration: int = 200000
    """Training steps (rounded up to whole epochs)."""
    batch_size: int = 100
    learning_rate: float = 0.1
    decay_steps: int = 500
    """Steps of the first cosine-restart cycle (each next one 1.5× longer, 0.9× lower)."""
    momentum: float = 0.9
    weight_decay: float | None = None
    """None: the network's (wrn28-10 5e-4, resnet29/resnet50 1e-4, others 5e-4)."""
    probe_dataset_hold_ratio: float = 0.02
    """Share of the training set held out, class-balanced, as the clean probe."""
    ce_factor: float = 5.0
    consistency_factor: float = 20.0
    meta_stepsize: float = 0.1
    meta_momentum: float = 0.9
    grad_eps_init: float = 0.9
    aug_type: Literal["autoaug", "randaug", "default"] = "autoaug"
    use_ema: bool = True
    rampup_steps: int = 0
    """Ramp ce_factor and consistency_factor up over this many steps (0: IEG's code)."""
    threshold: float | None = None
    """The paper's isolation threshold before MixUp (None: IEG's code)."""
    checkpoint_path: Path = Path("/tmp/ieg")
    restore: Path | None = None
    """Evaluation: this checkpoint file instead of the run folder's latest."""
    use_imagenet_as_eval: bool = False
    """WebVision-mini: evaluate on the ImageNet validation images of its 50 classes."""
    data_dir: str | None = None
    imagenet_dir: str | None = None
    """WebVision-mini: ImageNet in class folders (default <data-dir>/imagenet)."""
    train_subset: int | None = None
    test_subset: int | None = None
    val_batch_size: int = 100
    seed: int = 0
    noise_seed: int = 0
    workers: int = 2
    """WebVision-mini: image decoding processes."""
    device: str = "auto"
    progress: bool = True


def parse_dataset(name: str) -> tuple[str, str, float]:
    """``cifar100_uniform_0.8`` → (``cifar100``, ``uniform``, 0.8); ``webvisionmini_10`` →
    (``webvisionmini``, ``none``, 10.0) (the probe size per class; 10 when absent)."""
    if name.startswith("webvisionmini"):
        rest = name[len("webvisionmini") :]
        if rest and not re.fullmatch(r"_\d+", rest):
            raise ConfigError(f"--dataset {name}: use webvisionmini or webvisionmini_<n>")
        return "webvisionmini", "none", float(rest[1:]) if rest else 10.0
    parts = name.rsplit("_", 2)
    if len(parts) != 3:
        raise ConfigError(
            f"--dataset {name!r}: expected <dataset>_<noise>_<ratio>, e.g. "
            "cifar100_uniform_0.8 or cifar10_asymmetric_0.4"
        )
    ds, noise, ratio = parts
    try:
        rate = float(ratio)
    except ValueError:
        raise ConfigError(
            f"--dataset {name!r}: the noise ratio {ratio!r} is not a number"
        ) from None
    if not 0 <= rate <= 1:
        raise ConfigError(f"--dataset {name!r}: the noise ratio must lie in [0, 1]")
    return ds, noise, rate


def run_dir_of(a: IEGArgs) -> Path:
    """``<checkpoint_path>/<dataset>_p<ratio>/<network_name>`` (IEG's ``main.py``)."""
    return Path(a.checkpoint_path) / f"{a.dataset}_p{a.probe_dataset_hold_ratio}" / a.network_name


def method_options(a: IEGArgs) -> tuple[str, dict[str, str]]:
    ema = "0.999" if a.use_ema else "0"
    if a.method == "ieg":
        opts = dict(
            ce_factor=a.ce_factor,
            consistency_factor=a.consistency_factor,
            meta_stepsize=a.meta_stepsize,
            meta_momentum=a.meta_momentum,
            grad_eps_init=a.grad_eps_init,
            aug_type=a.aug_type,
            ema_decay=ema,
            rampup_steps=a.rampup_steps,
            threshold=a.threshold,
        )
        return "ieg", {k: str(v) for k, v in opts.items()}
    if a.method == "l2r":
        return "l2r", {"meta_stepsize": str(a.meta_stepsize), "ema_decay": ema}
    return "standard", {"ema_decay": ema}  # IEG's supervised: standard plus an EMA


def train_config(a: IEGArgs, epochs: int = 1) -> TrainConfig:
    """The TrainConfig of a CIFAR-like run (the probe held out by ``probe_ratio``)."""
    ds, noise, rate = parse_dataset(a.dataset)
    method, opts = method_options(a)
    wd = (
        a.weight_decay
        if a.weight_decay is not None
        else NETWORK_WEIGHT_DECAY.get(a.network_name, 5e-4)
    )
    return TrainConfig(
        dataset=ds,
        data_dir=a.data_dir,
        train_subset=a.train_subset,
        test_subset=a.test_subset,
        noise=noise,
        noise_rate=rate,
        noise_seed=a.noise_seed,
        model=a.network_name,
        method=method,
        method_options=opts,
        probe_ratio=a.probe_dataset_hold_ratio,
        epochs=epochs,
        batch_size=a.batch_size,
        optimizer="sgd",
        lr=a.learning_rate,
        momentum=a.momentum,
        weight_decay=wd,
        lr_schedule="cosine-restarts",
        lr_cycle_steps=a.decay_steps,
        augment=True,
        seed=a.seed,
        device=a.device,
        eval_batch_size=a.val_batch_size,
        progress=a.progress,
        out=str(Path(a.checkpoint_path)),
        name=str(run_dir_of(a).relative_to(a.checkpoint_path)),
    )


# --------------------------------------------------------------------------------------------
# building a run


def build_pipeline(a: IEGArgs, epochs_for=None):
    """The run of ``a`` (:func:`noisyfit.api.build_run`; ``epochs_for(steps_per_epoch) ->
    epochs``). CIFAR-like data goes through the shared data preparation; WebVision-mini's
    folder loaders are passed in as the run's loaders. Returns ``(run, probe_info)``."""
    if parse_dataset(a.dataset)[0] == "webvisionmini":
        return _webvision_run(a, epochs_for)
    cfg = train_config(a)
    seed_everything(cfg.seed, cfg.deterministic)
    data = prepare_data(cfg)
    if data.probe_index is None:
        raise ConfigError(
            f"--probe-dataset-hold-ratio {a.probe_dataset_hold_ratio} holds out "
            "no probe image; use a larger ratio"
        )
    steps = -(-len(data.dataset) // cfg.batch_size)
    cfg = cfg.replace(epochs=epochs_for(steps) if epochs_for else 1)
    run = build_run(cfg, data=data, device=resolve_device(cfg.device))
    info = {
        "source": "seeded class-balanced draw before noise injection "
        f"(probe_dataset_hold_ratio {a.probe_dataset_hold_ratio})",
        "used_by_method": a.method != "supervised",
        "indices": data.probe_index.tolist(),
    }
    return run, info


def _webvision_run(a: IEGArgs, epochs_for):
    _, _, per_class = parse_dataset(a.dataset)
    device = resolve_device(a.device)
    seed_everything(a.seed)
    root = wv.find_root(a.data_dir)
    train_items, val_items = wv.webvision_lists(root)
    if a.train_subset is not None:
        keep = np.random.default_rng(12345).permutation(len(train_items))[: a.train_subset]
        train_items = train_items.subset(np.sort(keep))
    wnids = train_items.class_names
    test_items = (
        wv.imagenet_val(root, wnids, a.imagenet_dir) if a.use_imagenet_as_eval else val_items
    )
    if a.test_subset is not None:
        test_items = test_items.subset(np.arange(min(a.test_subset, len(test_items))))
    kw = dict(device=device, workers=a.workers)
    train = wv.FolderLoader(
        train_items,
        batch_size=a.batch_size,
        train=True,
        seed=a.seed,
        strong=a.method == "ieg",
        **kw,
    )
    test = wv.FolderLoader(test_items, batch_size=a.val_batch_size, train=False, **kw)
    probe = info = None
    if a.method != "supervised":
        p_items = wv.imagenet_probe(root, wnids, int(per_class), a.noise_seed, a.imagenet_dir)
        probe = wv.FolderLoader(p_items, batch_size=a.batch_size, train=True, seed=a.seed + 1, **kw)
        info = {
            "size": len(p_items),
            "per_class": int(per_class),
            "used_by_method": True,
            "source": "ImageNet training images of the 50 classes (IEG's WebVision probe)",
            "files": [str(p) for p in p_items.paths],
        }
    method_name, opts = method_options(a)
    wd = (
        a.weight_decay
        if a.weight_decay is not None
        else NETWORK_WEIGHT_DECAY.get(a.network_name, 5e-4)
    )
    epochs = epochs_for(len(train)) if epochs_for else 1
    cfg = TrainConfig(
        dataset="webvision-mini",
        data_dir=a.data_dir,
        noise="none",
        model=a.network_name,
        method=method_name,
        method_options=opts,
        epochs=epochs,
        batch_size=a.batch_size,
        lr=a.learning_rate,
        momentum=a.momentum,
        weight_decay=wd,
        lr_schedule="cosine-restarts",
        lr_cycle_steps=a.decay_steps,
        augment=True,
        seed=a.seed,
        device=a.device,
        eval_batch_size=a.val_batch_size,
        progress=a.progress,
    )
    loaders = Loaders(train, len(wnids), (3, 224, 224), test=test, probe=probe)
    run = build_run(cfg, loaders=loaders, device=device)
    return run, info


# --------------------------------------------------------------------------------------------
# train / evaluation


def train(a: IEGArgs) -> dict[str, Any]:
    """Train (or continue) the run of ``a`` through the one run-folder writer
    (:func:`noisyfit.api.run_in_folder`); returns the last epoch's record."""
    run_dir = run_dir_of(a)
    resume = (run_dir / "checkpoint.pt").is_file()
    run, probe_info = build_pipeline(a, lambda steps: max(1, math.ceil(a.max_iteration / steps)))
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        print(f"continuing the run in {run_dir} from its checkpoint")
    files = {"ieg_args.json": _args_json(a)}
    if probe_info is not None:
        files["probe.json"] = probe_info
    with RunLock(run_dir):  # one writer per run folder, as `noisyfit train`
        res, _ = run_in_folder(
            run,
            run_dir,
            resume=resume,
            report=False,
            describe=f"{a.method} ",
            files=files,
            extra={
                "ieg": {"method": a.method, "dataset": a.dataset, "network_name": a.network_name}
            },
        )
    return res.history[-1] if res.history else {}


def evaluation(a: IEGArgs) -> dict[str, dict[str, float]]:
    """Restore the run's latest checkpoint (or ``--restore``) and evaluate every network
    (the EMA first); labels ≥ K never occur (the 50-class lists are filtered when read)."""
    run_dir = run_dir_of(a)
    path = a.restore or run_dir / "checkpoint.pt"
    if not Path(path).is_file():
        raise MissingFileError(
            f"no checkpoint at {path}: give the same --dataset, "
            "--network-name, --probe-dataset-hold-ratio and "
            "--checkpoint-path as for training (or --restore FILE)"
        )
    saved = run_dir / "ieg_args.json"
    if saved.is_file():  # rebuild the trained pipeline; where the data lives may differ now
        keep = (
            "data_dir",
            "imagenet_dir",
            "device",
            "val_batch_size",
            "workers",
            "use_imagenet_as_eval",
            "test_subset",
            "progress",
            "restore",
            "mode",
        )
        old = json.loads(saved.read_text())
        a = IEGArgs(**{**_args_from_json(old), **{k: getattr(a, k) for k in keep}})
    run, _ = build_pipeline(a)
    state = load_checkpoint(path, map_location=run.device)
    for k, m in run.method.models.items():
        m.load_state_dict(state["models"][k])
    run.method.load_state_dict(state["method"])
    res = evaluate(run.method, run.test)
    for name, r in res.items():
        print(
            f"[evaluation] {name}: top-1 {100 * r['acc']:.2f}%  top-5 {100 * r['top5']:.2f}%  "
            f"loss {r['loss']:.4f}  (epoch {int(state['epoch']) + 1}, {path})"
        )
    return res


def _args_json(a: IEGArgs) -> dict[str, Any]:
    d = asdict(a)
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def _args_from_json(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    d["checkpoint_path"] = Path(d["checkpoint_path"])
    d["restore"] = Path(d["restore"]) if d.get("restore") else None
    return d


@command(
    "ieg",
    help="IEG's command line: --dataset cifar100_uniform_0.8 --method ieg|l2r|"
    "supervised --network-name wrn28-10 --mode train|evaluation",
)
def cmd_ieg(argv: Sequence[str]) -> int:
    a = tyro.cli(IEGArgs, args=list(argv), prog="noisyfit ieg")
    parse_dataset(a.dataset)
    if a.mode == "evaluation":
        evaluation(a)
        return 0
    last = train(a)
    if last.get("test_acc") is not None:
        print(
            f"\n{a.method} on {a.dataset}: test top-1 {100 * last['test_acc']:.2f}% "
            f"top-5 {100 * last['test_top5']:.2f}% (run folder {run_dir_of(a)})"
        )
    return 0


def main(argv: Sequence[str]) -> int:
    """For tests: ``main(["--dataset", ...])`` as ``noisyfit ieg ...``."""
    return cmd_ieg(argv)


__all__ = ["IEGArgs", "build_pipeline", "evaluation", "parse_dataset", "run_dir_of", "train"]
