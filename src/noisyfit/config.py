"""The configuration of one training run: one dataclass, every field with its default and unit.

The CLI (``noisyfit train --help``) is generated from it; a YAML file (``--config``) gives
defaults that flags override; the resolved config is saved as ``config.yaml`` in the run folder
and inside every checkpoint. Unknown keys and wrongly typed values are errors.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro
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
    method_options: KeyValues = field(default_factory=dict)
    """Method options (the method's ``Config`` fields), e.g. ``--method-options q=15
    epsilon=0.05`` (``q 15 epsilon 0.05`` works too), typed by the method's own Config."""
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
    sync_bn: bool = False
    """Under torchrun (W > 1, CUDA): SyncBatchNorm, batch statistics over the global batch
    (default: each process normalises its own share). Ignored in one process."""
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
    """A TrainConfig from a dict of plain values (YAML, a sweep file, a preset, overrides).

    Raises:
        ConfigError: for an unknown key (listing the valid ones) or a value of the wrong type.
    """
    return to_dataclass(TrainConfig, d)


# --------------------------------------------------------------------------------------------
# the one converter: plain values (CLI strings, YAML values, sweep files, presets) -> dataclasses

_NONE = ("none", "null", "~")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def to_dataclass(cls: type, values: Any, *, label: str = "config key", owner: str = "") -> Any:
    """``cls(**values)`` with every value converted to its field's type by :func:`convert`.

    Used for TrainConfig (config files, sweep files, presets, ``replace``) and for every
    method's ``Config`` (``--method-options``, YAML ``method_options:``). ``label`` and
    ``owner`` name a key in messages: ``config key 'lr'``, ``option 't_k' of method 'x'``.

    Raises:
        ConfigError: for a key ``cls`` has no field for (listing the valid keys) or a value
            that cannot be read as its field's type (naming the type).
    """
    of = f" of {owner}" if owner else ""
    if not isinstance(values, dict):
        raise ConfigError(f"{label}s{of}: expected a mapping of key: value, got {values!r}")
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [str(k) for k in values if k not in fields]
    if unknown:
        s = "s" if len(unknown) > 1 else ""
        raise ConfigError(
            f"unknown {label}{s} {', '.join(map(repr, unknown))}{of}; "
            f"valid: {', '.join(sorted(fields)) or '(none)'}"
        )
    hints = typing.get_type_hints(cls)
    return cls(**{k: convert(v, hints[k], f"{label} {k!r}{of}") for k, v in values.items()})


def convert(value: Any, tp: Any, where: str = "value") -> Any:
    """``value`` as type ``tp``: a plain value as YAML gives it, or a string as the CLI does.

    Strings are read by the type: ``"3"`` as an int, ``"true"``/``"false"`` as a bool,
    ``"none"``/``"null"`` as None where None is allowed, ``"0.5,0.75"`` or ``"[0.5, 0.75]"``
    as a tuple, ``"{a: 1}"`` as a mapping. ``where`` names the key in the error.

    Raises:
        ConfigError: ``"<where>: <value> is not <the type>"``.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    text = isinstance(value, str)
    if tp is Any or tp is object:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if type(None) in args and (value is None or (text and value.lower() in _NONE)):
            return None
        for a in args:
            if a is not type(None):
                try:
                    return convert(value, a, where)
                except ConfigError:
                    pass
        raise ConfigError(f"{where}: {value!r} is not {describe_type(tp)}")
    if origin is Literal:
        for a in args:
            if value == a or (text and not isinstance(a, str) and value == str(a)):
                return a
        raise ConfigError(f"{where}: {value!r} is not {describe_type(tp)}")
    if origin in (tuple, list):
        if text:
            value = [v for v in value.strip("[]()").replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {value!r} is not {describe_type(tp)}")
        inner = args[0] if args else Any
        return origin(convert(v, inner, where) for v in value)
    if origin is dict:
        if text:
            try:
                value = yaml.safe_load(value) if value.strip() else {}
            except yaml.YAMLError:
                pass
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {value!r} is not {describe_type(tp)}")
        vt = args[1] if len(args) == 2 else Any
        return {  # a str mapping (TrainConfig.method_options) keeps plain values as text
            str(k): str(v) if vt is str and not isinstance(v, str) else convert(v, vt, where)
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
    elif tp is int:
        if text:
            try:
                return int(value)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
        elif isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if text:
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if text:
            return value
    elif tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
    else:
        return value  # a type the converter does not check
    raise ConfigError(f"{where}: {value!r} is not {describe_type(tp)}")


def describe_type(tp: Any) -> str:
    """A type in words for messages: ``an integer``, ``one of 'a', 'b'``, ``a list of numbers``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        parts = [describe_type(a) for a in args]
        return ", ".join(parts[:-1]) + " or " + parts[-1]
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (tuple, list):
        inner = describe_type(args[0]) if args else "values"
        return f"a list of {inner.removeprefix('an ').removeprefix('a ')}s"
    if origin is dict:
        return "a mapping of key: value"
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        Path: "a path",
        type(None): "none",
    }
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def key_values(tokens: list[str]) -> dict[str, str]:
    """The CLI form of a mapping: ``key=value`` items and/or ``key value`` pairs → ``{key:
    value}`` (``-`` in keys read as ``_``); the values are typed later by :func:`convert`."""
    out: dict[str, str] = {}
    it = iter(tokens)
    for tok in it:
        key, sep, value = tok.partition("=")
        if not sep:
            value = next(it, None)
            if value is None:
                raise ConfigError(f"{tok!r} has no value; write key=value (or key value)")
        if not key:
            raise ConfigError(f"{tok!r}: a key=value pair needs a key")
        out[key.strip().replace("-", "_")] = value
    return out


#: ``dict[str, str]`` read from the command line as ``KEY=VALUE ...`` (or ``KEY VALUE ...``).
KeyValues = Annotated[
    dict[str, str],
    tyro.constructors.PrimitiveConstructorSpec(
        nargs="*",
        metavar="KEY=VALUE",
        instance_from_str=key_values,
        is_instance=lambda v: isinstance(v, dict),
        str_from_instance=lambda d: [f"{k}={v}" for k, v in d.items()],
    ),
]


def _list_flag(tp: Any, metavar: str) -> Any:
    """How tyro reads a list flag: ``a,b,c`` or ``a b c``, typed by :func:`convert`."""
    return tyro.constructors.PrimitiveConstructorSpec(
        nargs="*",
        metavar=metavar,
        instance_from_str=lambda tokens: convert(" ".join(tokens), tp, f"{metavar} list"),
        is_instance=lambda v: isinstance(v, tuple),
        str_from_instance=lambda v: [str(x) for x in v],
    )


#: A list of numbers on the command line (``0,0.1,0.2`` or ``0 0.1 0.2``).
Floats = Annotated[tuple[float, ...], _list_flag(tuple[float, ...], "NUMBER")]
#: A list of names on the command line (``symmetric,pair`` or ``symmetric pair``).
Names = Annotated[tuple[str, ...], _list_flag(tuple[str, ...], "NAME")]


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
