"""``noisyfit selfie-cli``: the SELFIE repository's command line and log files.

::

    noisyfit selfie-cli GPU_ID DATA MODEL METHOD NOISE_TYPE NOISE_RATE LOG_DIR [options]
    noisyfit selfie-cli 0 CIFAR-100 DenseNet-25-12 SELFIE pair 0.4 log/CIFAR-100/SELFIE

takes the seven positionals of ``python main.py`` in ``kaist-dmlab/SELFIE`` with their names
(CIFAR-10, CIFAR-100, Tiny-ImageNet, ANIMAL-10N; VGG-19, DenseNet-10-12/25-12/40-12; Default,
ActiveBias, Coteaching, SELFIE; pair, symmetry, none — noisyfit's own names work too) and runs
the original protocol: 100 epochs per run, batch 128, SGD with Nesterov momentum 0.9, learning
rate 0.1 ÷5 at 50 % and 75 % of the run, weight decay 5e-4, no augmentation, per-image
standardization, warm-up 25 epochs (SELFIE, ActiveBias), SELFIE's q = 15, ε = 0.05 and
restart = 3 (4 runs of 100 epochs), Co-teaching's T_k = 15; NOISE_RATE is also the τ the
methods assume (as the original; for ANIMAL-10N pass ``none 0.08``).

LOG_DIR becomes the noisyfit run folder (config.yaml, metrics.jsonl, checkpoint.pt, samples.csv,
...) and, when the run ends, holds the original logs:

* ``log.csv``: the header ``epcoh, learning rate, training loss, training error, test loss,
  test error`` (sic) and an empty line, then one ``, ``-separated row per epoch (SELFIE: the
  epoch counter restarts at 1 in every run); Co-teaching: the 10-column layout ``epcoh,
  learning rate, training loss (network1), training error (network1), training loss
  (network2), training error (network2), test loss (network1), test error (network1), test loss
  (network2), test error (network2)``.
* ``detail_log.csv`` (SELFIE): the true-vs-noisy count matrix; per epoch of the SELFIE phase
  ``epoch, #correctly refurbished, #refurbished, ratio`` over every sample ever refurbished;
  after each run the true-vs-refurbished count matrix of the refurbished samples and
  ``new noise rate, τ``. Where no truth exists (ANIMAL-10N) the given labels stand in for it,
  as the original treats the file labels as true.

While training, ``log.csv`` holds noisyfit's 6-column layout (the engine rewrites it every
epoch); it is replaced by the original layout at the end (also after ``--resume``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import tyro

from ..api import train
from ..cli import command, parse_args
from ..config import TrainConfig
from ..errors import RunExistsError
from ..methods.selfie import replay_refurbishments

DATASETS = {
    "CIFAR-10": "cifar10",
    "CIFAR-100": "cifar100",
    "Tiny-ImageNet": "tiny-imagenet",
    "ANIMAL-10N": "animal-10n",
}
MODELS = {
    "VGG-19": "vgg19",
    "DenseNet-10-12": "densenet-10-12",
    "DenseNet-25-12": "densenet-25-12",
    "DenseNet-40-12": "densenet-40-12",
}
METHODS = {
    "Default": "standard",
    "ActiveBias": "active-bias",
    "Coteaching": "coteaching",
    "SELFIE": "selfie",
}
NOISE = {"symmetry": "symmetric", "pair": "pair", "none": "none"}

HEADER = "epcoh, learning rate, training loss, training error, test loss, test error\n"
HEADER_COTEACHING = (
    "epcoh, learning rate, training loss (network1), training error (network1), training loss "
    "(network2), training error (network2), test loss (network1), test error (network1), test "
    "loss (network2), test error (network2)\n"
)


@dataclass
class SelfieArgs:
    """SELFIE's command line (kaist-dmlab/SELFIE main.py) with its protocol and log files.
    Example: noisyfit selfie-cli 0 CIFAR-100 DenseNet-25-12 SELFIE pair 0.4 log/CIFAR-100/SELFIE
    (the options beyond the seven positionals default to the original protocol)."""

    gpu_id: Annotated[int, tyro.conf.Positional, tyro.conf.arg(metavar="GPU_ID")]
    """GPU number (CPU when CUDA is not available)."""
    data: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="DATA")]
    """CIFAR-10, CIFAR-100, Tiny-ImageNet, ANIMAL-10N (or a noisyfit dataset name)."""
    model_name: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="MODEL")]
    """VGG-19, DenseNet-10-12, DenseNet-25-12, DenseNet-40-12 (or a noisyfit model name)."""
    method_name: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="METHOD")]
    """Default, ActiveBias, Coteaching, SELFIE (or a noisyfit method name)."""
    noise_type: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="NOISE_TYPE")]
    """pair, symmetry, none (or a noisyfit noise kind)."""
    noise_rate: Annotated[float, tyro.conf.Positional, tyro.conf.arg(metavar="NOISE_RATE")]
    """Rate to inject; also τ (for ANIMAL-10N: none 0.08)."""
    log_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="LOG_DIR")]
    """Folder for log.csv and the run."""
    epochs: int = 100
    """Epochs per run (SELFIE: per round)."""
    batch_size: int = 128
    lr: float = 0.1
    warm_up: int = 25
    """SELFIE and ActiveBias warm-up."""
    restart: int = 3
    """SELFIE restarts (runs = restart+1)."""
    q: int = 15
    """SELFIE history length."""
    epsilon: float = 0.05
    """SELFIE threshold ε."""
    t_k: int = 15
    """Co-teaching T_k."""
    smoothness: float = 0.2
    """ActiveBias smoothness s."""
    tau: float | None = None
    """τ (default: NOISE_RATE)."""
    data_dir: str | None = None
    """Dataset folder (or its parent holding DATA/); default: ./dataset/DATA if it exists,
    else noisyfit's search path."""
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    noise_seed: int = 0
    device: str | None = None
    """Default: cuda:GPU_ID if available, else cpu."""
    progress: bool = True
    """Show a progress bar per epoch."""
    resume: bool = False
    """Continue the run in LOG_DIR."""


def parse_selfie_args(argv: Sequence[str]) -> SelfieArgs:
    """The flags of ``noisyfit selfie-cli`` (the seed's seven positionals, then options)."""
    return parse_args(SelfieArgs, argv, prog="noisyfit selfie-cli")


def _data_dir(data: str, given: str | None) -> str | None:
    if given is not None:
        sub = Path(given) / data
        return str(sub) if sub.is_dir() else given
    local = Path("dataset") / data
    return str(local) if local.is_dir() else None


def build_config(a: SelfieArgs):
    """The TrainConfig of a selfie-cli invocation (the original protocol)."""
    method = METHODS.get(a.method_name, a.method_name)
    options: dict[str, str] = {}
    epochs = a.epochs
    if method == "selfie":
        options = {
            "q": str(a.q),
            "epsilon": str(a.epsilon),
            "warm_up": str(a.warm_up),
            "restart": str(a.restart),
            "round_epochs": str(a.epochs),
        }
        epochs = a.epochs * (a.restart + 1)
    elif method == "active-bias":
        options = {"warm_up": str(a.warm_up), "smoothness": str(a.smoothness)}
    elif method == "coteaching":
        options = {"t_k": str(a.t_k)}
    device = a.device or (f"cuda:{a.gpu_id}" if torch.cuda.is_available() else "cpu")
    log_dir = a.log_dir.resolve()
    return TrainConfig(
        dataset=DATASETS.get(a.data, a.data),
        data_dir=_data_dir(a.data, a.data_dir),
        train_subset=a.train_subset,
        test_subset=a.test_subset,
        noise=NOISE.get(a.noise_type, a.noise_type),
        noise_rate=a.noise_rate,
        noise_seed=a.noise_seed,
        model=MODELS.get(a.model_name, a.model_name),
        method=method,
        method_options=options,
        tau=a.noise_rate if a.tau is None else a.tau,
        epochs=epochs,
        batch_size=a.batch_size,
        optimizer="sgd",
        lr=a.lr,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        lr_schedule="step",
        lr_milestones=(0.5, 0.75),
        lr_decay=0.2,
        augment=False,
        normalize="per-image",
        seed=a.seed,
        device=device,
        out=str(log_dir.parent),
        name=log_dir.name,
        progress=a.progress,
    )


@command(
    "selfie-cli",
    help="SELFIE's command line: GPU_ID DATA MODEL METHOD NOISE_TYPE "
    "NOISE_RATE LOG_DIR (original protocol and log.csv)",
)
def selfie_cli(argv: Sequence[str]) -> int:
    a = parse_selfie_args(argv)
    log_dir = a.log_dir.resolve()
    if a.resume:
        result = train(resume=log_dir, progress=a.progress)
    else:
        if (log_dir / "checkpoint.pt").exists():
            raise RunExistsError(
                f"{log_dir} already holds a run; continue it with --resume, "
                "or choose another LOG_DIR"
            )
        result = train(build_config(a))
    if result.method is not None:  # None: a finished run, left as it is (its logs included)
        write_original_logs(log_dir, result)
    s = result.summary
    best = s["best_test_acc"]
    print(
        f"{s['method']}: best test error {1 - best:.4f}, last {1 - s['last_test_acc']:.4f}; "
        f"logs in {log_dir / 'log.csv'}"
        if best is not None
        else f"logs in {log_dir}"
    )
    return 0


# --------------------------------------------------------------------------------------------
# the original log files


def _num(v: Any) -> str:
    """A number as the original's ``str(float)``, without float noise in the last digits."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "nan"
    if isinstance(v, int):
        return str(v)
    return str(float(f"{v:.10g}"))


def _row(values) -> str:
    return ", ".join(_num(v) for v in values)


def log_rows(history: list[dict[str, Any]], method: str) -> tuple[str, list[str]]:
    """(header, rows) of the original log.csv for ``method``'s per-epoch records."""
    rows = []
    for h in history:
        test_err = None if h.get("test_acc") is None else 1 - h["test_acc"]
        if method == "coteaching":
            acc2 = h.get("test_acc_net2")
            rows.append(
                _row(
                    [
                        h["epoch"],
                        h["lr"],
                        h["train_loss_net1"],
                        h["train_error_net1"],
                        h["train_loss_net2"],
                        h["train_error_net2"],
                        h["test_loss"],
                        test_err,
                        h.get("test_loss_net2"),
                        None if acc2 is None else 1 - acc2,
                    ]
                )
            )
        elif method == "selfie":
            rows.append(
                _row(
                    [
                        h["round_epoch"],
                        h["lr"],
                        h["selfie_train_loss"],
                        h["selfie_train_error"],
                        h["test_loss"],
                        test_err,
                    ]
                )
            )
        else:
            rows.append(
                _row(
                    [
                        h["epoch"],
                        h["lr"],
                        h["train_loss"],
                        h["train_error"],
                        h["test_loss"],
                        test_err,
                    ]
                )
            )
    return (HEADER_COTEACHING if method == "coteaching" else HEADER), rows


def _matrix_block(m: np.ndarray) -> str:
    """The original's ``print_transition_matrix`` text: rows of ``v, `` then a blank line."""
    return "".join("".join(f"{int(v)}, " for v in row) + "\n" for row in m) + "\n"


def _confusion(true: np.ndarray, label: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(true * k + label, minlength=k * k).reshape(k, k)


def detail_rows(
    method, truth: np.ndarray, given: np.ndarray, num_classes: int, epochs_done: int
) -> list[str]:
    """The lines of SELFIE's detail_log.csv, replayed from the method's refurbishment events."""
    k = num_classes
    lines = [_matrix_block(_confusion(truth, given, k))]
    warm_up = method.config.warm_up
    states = replay_refurbishments(method.refurb_events, len(given), epochs_done)
    for epoch, state in enumerate(states):
        r, e = method.round_of(epoch)
        done = state >= 0
        n = int(done.sum())
        if e >= warm_up and n:
            st = state.numpy()
            correct = int((st[done.numpy()] == truth[done.numpy()]).sum())
            lines.append(f"{e + 1}, {correct}, {n}, {correct / n}")
        if e == method.round_epochs - 1 and r < len(method.tau_history):
            d = done.numpy()
            lines.append(_matrix_block(_confusion(truth[d], state.numpy()[d], k)))
            lines.append(f"new noise rate, {method.tau_history[r]}")
    return lines


def _read_labels(samples_csv: Path) -> tuple[np.ndarray, np.ndarray | None]:
    given, true = [], []
    with open(samples_csv, newline="") as f:
        for row in csv.DictReader(f):
            given.append(int(row["given_label"]))
            true.append(row["true_label"])
    g = np.asarray(given, dtype=np.int64)
    t = None if any(v == "" for v in true) else np.asarray(true, dtype=np.int64)
    return g, t


def write_original_logs(log_dir: Path, result) -> list[Path]:
    """Write ``log.csv`` (and SELFIE's ``detail_log.csv``) of a finished run into ``log_dir``."""
    method_name = result.summary["method"]
    header, rows = log_rows(result.history, method_name)
    paths = [log_dir / "log.csv"]
    with open(paths[0], "w") as f:
        for text in [header, *rows]:
            f.write(text + "\n")
    if method_name == "selfie":
        given, truth = _read_labels(log_dir / "samples.csv")
        ref = truth if truth is not None else given
        k = result.method.ctx.num_classes
        lines = detail_rows(result.method, ref, given, k, len(result.history))
        paths.append(log_dir / "detail_log.csv")
        with open(paths[1], "w") as f:
            for text in lines:
                f.write(text + "\n")
    return paths
