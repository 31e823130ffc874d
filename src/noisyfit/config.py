"""The configuration of one training run: one dataclass, every field with its default and unit.

The CLI (``noisyfit train --help``) is generated from it; a YAML file (``--config``) gives
defaults that flags override; the resolved config is saved as ``config.yaml`` in the run folder
and inside every checkpoint. Unknown keys and wrongly typed values are errors.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError

#: Evaluation batches when ``eval_batch_size`` is None: on the CPU, 256 is the fastest or
#: within 10% of it for mlp, cnn-tiny and cnn-small, and faster per image than a training
#: forward, while 1000 is 1.7× slower than 256 for cnn-small (docs/benchmarks/eval_batch.md);
#: a GPU wants large batches.
CPU_EVAL_BATCH = 256
CUDA_EVAL_BATCH = 1000


@dataclass
class TrainConfig:
    """One training run on noisy labels."""

    # data
    dataset: str = "fashion-mnist"
    """Dataset name (``noisyfit list datasets``)."""
    data_dir: str | None = None
    """Folder searched first for the dataset's files (imagefolder/arrays: the folder/.npz)."""
    train_subset: int | None = None
    """Train on a fixed, seeded, class-stratified subset of this many samples (None: all)."""
    test_subset: int | None = None
    """Evaluate on the first this-many test samples (None: all)."""

    # noise
    noise: str = "symmetric"
    """Noise kind (``noisyfit list noise``): none, symmetric, uniform, pair, asymmetric, ..."""
    noise_rate: float = 0.4
    """Nominal noise rate r in [0, 1]."""
    noise_mode: Literal["sample", "exact"] = "sample"
    """``sample``: each label drawn from its row of T (as the papers); ``exact``: exact counts."""
    noise_seed: int = 0
    """Seed of the noise injection (separate from ``seed``)."""
    noise_file: str | None = None
    """Transition matrix (``--noise matrix``) or noisy labels (``--noise labels``) file."""

    # model and method
    model: str = "cnn-small"
    """Model name (``noisyfit list models``)."""
    method: str = "standard"
    """Method name (``noisyfit list methods``)."""
    method_options: dict[str, str] = field(default_factory=dict)
    """Method options as key value pairs, e.g. ``--method-options q 15 epsilon 0.05``."""
    tau: float | Literal["auto"] | None = None
    """Noise rate τ for methods that need one: a number, ``auto`` (estimated by INCV's 2-fold
    noisy cross-validation, recorded in tau.json), or None (the injected noise's expected
    rate; ``auto`` where no truth exists)."""
    tau_epochs: int | None = None
    """Epochs of each fold's network when τ is estimated (None: the run's epochs)."""

    # clean probe set (IEG, L2R): held out of the training set before noise is injected
    probe_per_class: int = 0
    """Clean probe images per class, held out before noise (0: none unless probe_ratio)."""
    probe_ratio: float = 0.0
    """Fraction of the training set held out as the probe (IEG's probe_dataset_hold_ratio)."""
    probe_file: str | None = None
    """A file of trusted training-sample indices to use as the probe (.npy/.txt)."""

    # noisy validation split (model selection without clean labels): held out after noise
    val_ratio: float = 0.0
    """Fraction of the *noisy* training set held out for validation, seeded by noise_seed and
    stratified on the given labels (0: none). Each epoch records val_loss/val_acc on the given
    labels; summary.json records selected_epoch (best val_acc) and its test accuracy."""
    val_file: str | None = None
    """A file of validation indices (.npy/.txt; dataset rows, as a run's val_index.npy) used
    instead of val_ratio."""

    # optimization (the SELFIE protocol's defaults)
    epochs: int = 10
    """Training epochs (the papers use 100-200; 10 keeps the default run under 5 minutes)."""
    batch_size: int = 128
    optimizer: Literal["sgd", "adam"] = "sgd"
    """``sgd`` (momentum, Nesterov switch; the SELFIE/IEG protocol) or ``adam`` (INCV,
    official Co-teaching; ``momentum`` is then β1)."""
    lr: float = 0.1
    """Initial learning rate."""
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    lr_schedule: Literal["step", "cosine", "cosine-restarts", "constant", "linear-decay"] = "step"
    """``step``: ×lr_decay at each fraction in lr_milestones; ``cosine``: to 0 at the end;
    ``cosine-restarts``: IEG's warm restarts (first cycle lr_cycle_steps); ``linear-decay``:
    the official Co-teaching Adam plan, constant then linearly to 0 from lr_decay_start (and
    Adam's β1 → beta1_after_decay)."""
    lr_decay_start: int = 80
    """``linear-decay``: the epoch (1-based) the decay starts (Co-teaching's
    epoch_decay_start, 80 of its 200)."""
    beta1_after_decay: float | None = 0.1
    """``linear-decay`` with Adam: β1 from lr_decay_start on (official Co-teaching: 0.9 → 0.1;
    None: unchanged)."""
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    """Fractions of the epochs at which the step schedule decays."""
    lr_decay: float = 0.2
    """Factor of each step decay (0.2: ÷5, as SELFIE)."""
    lr_cycle_steps: int = 500
    """``cosine-restarts``: steps of the first cycle (IEG's ``decay_steps``); each next cycle is
    1.5× longer and starts 0.9× lower."""
    augment: bool = False
    """Random crop (padding 4) + horizontal flip on the device (off: the SELFIE protocol)."""
    normalize: Literal["channel", "per-image", "none"] = "channel"
    """Input normalization: dataset channel statistics, or per-image standardization."""

    # add-ons any method can switch on (engine/loop.py)
    ema: float = 0.0
    """Decay of an EMA of every network's weights, evaluated and saved instead of the live
    weights (0: off; e.g. 0.999). The live networks are logged as ``test_acc_live``."""
    mixup: float = 0.0
    """α of mixup (λ ~ Beta(α, α); 0: off) for methods whose loss accepts mixed targets
    (docs/methods/README.md lists them); other methods refuse it."""

    # run
    seed: int = 0
    """Training seed (weights, order of batches, augmentation, dropout)."""
    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1``..."""
    deterministic: bool = False
    """Deterministic algorithms (a resumed run then equals an uninterrupted one bit for bit)."""
    compile: bool = False
    """``torch.compile`` the networks (CUDA only)."""
    out: str = "runs"
    """Parent folder of run folders."""
    name: str | None = None
    """Run folder name (None: <dataset>-<method>-<noise><rate>-s<seed>-<time>)."""
    eval_batch_size: int | None = None
    """Batch of the test-set evaluation (None: fast on the device, ``eval_batch_for``: 1000 on
    CUDA, 256 on the CPU, where larger batches fall out of cache; docs/benchmarks/eval_batch.md)."""
    eval_every: int = 1
    """Evaluate on the test set every this many epochs (the last epoch always is)."""
    progress: bool = True
    """Show a progress bar per epoch."""
    checkpoint: bool = True
    """Write a checkpoint every epoch (needed for --resume)."""
    tensorboard: bool = False
    """Also log the per-epoch metrics as TensorBoard scalars in RUN_DIR/tensorboard/ (needs
    ``pip install 'noisyfit[tensorboard]'``)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range field and its valid range."""

        def need(ok: bool, key: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"config key {key!r} = {getattr(self, key)!r}: {rule}")

        for key in ("epochs", "batch_size", "eval_every", "lr_cycle_steps"):
            need(getattr(self, key) >= 1, key, "must be at least 1")
        need(
            self.eval_batch_size is None or self.eval_batch_size >= 1,
            "eval_batch_size",
            "must be at least 1 (or None: fast on the device)",
        )
        for key in ("train_subset", "test_subset"):
            need(
                getattr(self, key) is None or getattr(self, key) >= 1,
                key,
                "must be at least 1 (or None for all samples)",
            )
        need(0 <= self.noise_rate <= 1, "noise_rate", "must lie in [0, 1]")
        need(self.lr > 0, "lr", "must be positive")
        need(self.weight_decay >= 0, "weight_decay", "must be 0 or positive")
        need(0 <= self.momentum < 1, "momentum", "must lie in [0, 1)")
        need(self.lr_decay > 0, "lr_decay", "must be positive (0.2 divides by 5)")
        need(self.lr_decay_start >= 1, "lr_decay_start", "must be at least 1 (an epoch)")
        need(
            self.beta1_after_decay is None or 0 <= self.beta1_after_decay < 1,
            "beta1_after_decay",
            "must lie in [0, 1) (or None)",
        )
        need(
            all(0 < m <= 1 for m in self.lr_milestones),
            "lr_milestones",
            "fractions of the epochs, each in (0, 1], e.g. 0.5 0.75",
        )
        need(0 <= self.ema < 1, "ema", "must lie in [0, 1) (0: off; e.g. 0.999)")
        need(self.mixup >= 0, "mixup", "must be 0 (off) or positive (e.g. 1.0)")
        need(self.probe_per_class >= 0, "probe_per_class", "must be 0 or positive")
        need(0 <= self.probe_ratio < 1, "probe_ratio", "must lie in [0, 1)")
        need(0 <= self.val_ratio < 1, "val_ratio", "must lie in [0, 1) (0.05: a 5% split)")
        need(
            self.tau is None or self.tau == "auto" or 0 <= float(self.tau) < 1,
            "tau",
            "must lie in [0, 1), or be auto",
        )

    def eval_batch_for(self, device: Any) -> int:
        """The evaluation batch on ``device``: ``eval_batch_size``, or when None the fast one
        (``CUDA_EVAL_BATCH`` on a GPU, ``CPU_EVAL_BATCH`` elsewhere)."""
        if self.eval_batch_size is not None:
            return self.eval_batch_size
        return CUDA_EVAL_BATCH if str(device).startswith("cuda") else CPU_EVAL_BATCH

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        return d

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (checked like a config file)."""
        return from_dict({**self.to_dict(), **changes})


def from_dict(d: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a dict; unknown keys or wrong types raise ValueError."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(str(k) for k in set(d) - fields)
    if unknown:
        raise ConfigError(
            f"unknown config key(s): {', '.join(unknown)}. Valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for k, v in d.items():
        out[k] = _check_type(k, v, hints[k])
    return TrainConfig(**out)


def _check_type(key: str, v: Any, tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if v is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(key, v, a)
            except ValueError:
                pass
        raise ConfigError(f"config key {key!r}: {v!r} is not of type {tp}")
    if origin is Literal:
        if v not in args:
            raise ConfigError(f"config key {key!r}: {v!r} is not one of {list(args)}")
        return v
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {v!r}")
        return tuple(_check_type(key, x, args[0]) for x in v)
    if origin is dict:
        if not isinstance(v, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {v!r}")
        return {str(a): str(b) if not isinstance(b, str) else b for a, b in v.items()}
    if tp is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if tp in (int, float, str, bool):
        if not isinstance(v, tp) or (tp is int and isinstance(v, bool)):
            raise ConfigError(f"config key {key!r}: {v!r} is not of type {tp.__name__}")
    return v


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML config file (any subset of TrainConfig's keys)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist; check the path")
    data = read_yaml(p, "config file")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config file is a mapping of keys to values")
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from e


def read_yaml(path: Path, what: str = "YAML file") -> Any:
    """``yaml.safe_load`` of ``path``; malformed YAML or bytes raise one ConfigError line."""
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(
            f"{path}: not valid YAML{where}: {problem}; fix the {what} (key: value per line)"
        ) from None
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{path}: cannot read the {what} ({type(e).__name__}: {e})") from None


def resolve_config(
    config: TrainConfig | str | Path | None = None, /, **overrides: Any
) -> TrainConfig:
    """A TrainConfig from a config, a YAML file or None (the defaults), with ``overrides``."""
    if config is None:
        cfg = TrainConfig()
    elif isinstance(config, TrainConfig):
        cfg = config
    else:
        cfg = load_config(config)
    return cfg.replace(**overrides) if overrides else cfg


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
