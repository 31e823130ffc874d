"""Named presets of the seeds' protocols, each with its published number and source.

``noisyfit reproduce NAME`` trains the preset and compares its result with the published one
within the preset's tolerance; ``noisyfit reproduce --list`` shows them. The numbers are those
of ``spec/methods.md`` §9 (figure readings of the SELFIE repository, the Co-teaching README,
the INCV README table, the IEG abstract). They need CIFAR and a GPU; on a CPU they are for
wiring checks only (``--override dataset=synthetic model=cnn-tiny epochs=1``).

A preset is data: a TrainConfig mapping, the metric compared (``best_test_acc`` for the SELFIE
figures, which plot best test error; ``last_test_acc`` otherwise), the published value (an
accuracy in [0, 1]) and a tolerance in accuracy points. Add one by adding a :class:`Preset` to
:data:`PRESETS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig, from_dict
from .registry import UnknownNameError


@dataclass(frozen=True)
class Preset:
    """One published setting.

    Attributes:
        name: ``<method>-<dataset>-<noise>-<rate>[-<model>]``.
        config: TrainConfig fields of the protocol.
        metric: summary key compared (``best_test_acc`` or ``last_test_acc``).
        published: the published value of ``metric`` (accuracy in [0, 1]).
        tolerance: |ours − published| allowed (accuracy, e.g. 0.015 = 1.5 points).
        source: where the number comes from.
        note: caveats (figure reading, secondary source, departures).
    """

    name: str
    config: dict[str, Any]
    metric: str
    published: float
    tolerance: float
    source: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def train_config(self, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """The preset's TrainConfig with ``overrides`` (checked like a config file)."""
        return from_dict({**self.config, **(overrides or {})})


# SELFIE's protocol (kaist-dmlab/SELFIE main.py; see commands/selfie_cli.py): 100 epochs per
# round, SELFIE with restart 3 (4 rounds), SGD Nesterov 0.9, lr 0.1 ÷5 at 50 %/75 %, wd 5e-4,
# batch 128, per-image standardization, no augmentation; τ = the noise rate.
#: The options main.py gives each method it runs (others: their defaults), as data.
SELFIE_OPTIONS: dict[str, dict[str, str]] = {
    "selfie": {
        "q": "15",
        "epsilon": "0.05",
        "warm_up": "25",
        "restart": "3",
        "round_epochs": "100",
    },
    "coteaching": {"t_k": "15"},
    "active-bias": {"warm_up": "25", "smoothness": "0.2"},
}


def _selfie(dataset: str, kind: str, rate: float, model: str, method: str = "selfie") -> dict:
    options = dict(SELFIE_OPTIONS.get(method, {}))
    epochs = 100 * (int(options.get("restart", 0)) + 1)  # restart + 1 rounds of 100 epochs
    return dict(
        dataset=dataset,
        model=model,
        method=method,
        noise=kind,
        noise_rate=rate,
        tau=rate,
        method_options=options,
        epochs=epochs,
        batch_size=128,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        lr_schedule="step",
        lr_milestones=[0.5, 0.75],
        lr_decay=0.2,
        augment=False,
        normalize="per-image",
    )


SELFIE_SRC = (
    "kaist-dmlab/SELFIE figures/synthetic_evaluation.png (DenseNet-25-12, best test "
    "error), read in spec/methods.md §9.1"
)
SELFIE_NOTE = "figure reading; top row taken as pair noise [UNVERIFIED assignment]"

# INCV (ICML 2019) README table, CIFAR-10, ResNet-32, 200 epochs, Adam 1e-3 ×0.1 at 40/60/80 %
# (nearest to the original's schedule, docs/methods/incv.md), batch 128, shift + flip.
# Weight decay: the original ResNet-32 puts Keras l2(1e-4) on its block convolutions
# (my_model.py:18,22,27), a loss term 1e-4·Σw², i.e. a gradient 2e-4·w: weight_decay 2e-4
# here, on every parameter (the engine has one decay for all; the stem conv, BatchNorm and
# the dense layer are not decayed in the original).
INCV_BASE = dict(
    dataset="cifar10",
    model="resnet32",
    epochs=200,
    batch_size=128,
    optimizer="adam",
    lr=1e-3,
    momentum=0.9,
    weight_decay=2e-4,
    lr_schedule="step",
    lr_milestones=[0.4, 0.6, 0.8],
    lr_decay=0.1,
    augment=True,
)
INCV_SRC = "INCV README table (5 runs), spec/methods.md §3.6 / §9.5"

# IEG (CVPR 2020): WRN-28-10, 10 trusted images per class, batch 100, SGD 0.1 cosine restarts,
# 200 000 steps (= 400 epochs of 50 000 images), augmentation (noisyfit ieg's defaults).
IEG_BASE = dict(
    dataset="cifar100",
    model="wrn28-10",
    method="ieg",
    noise="uniform",
    probe_per_class=10,
    epochs=400,
    batch_size=100,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    lr_schedule="cosine-restarts",
    augment=True,
)
IEG_SRC = "IEG paper abstract (CVPR 2020), spec/methods.md §9.6"

#: The official Co-teaching code's CIFAR-10 setting (bhanML/Co-teaching main.py), shared by its
#: presets: 9-layer CNN, Adam 1e-3 with linear decay to 0 from epoch 80 and β1 0.9 → 0.1.
COTEACHING_OFFICIAL = dict(
    dataset="cifar10",
    model="cnn9",
    method="coteaching",
    method_options={"t_k": "10", "schedule": "official"},
    epochs=199,  # the official loop trains epochs 1 … 199 of n_epoch 200
    batch_size=128,
    optimizer="adam",
    lr=1e-3,
    momentum=0.9,
    weight_decay=0.0,
    lr_schedule="linear-decay",  # to 0 from epoch_decay_start 80, β1 0.9 → 0.1
    lr_decay_start=80,
    augment=False,
)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "selfie-cifar10-pair-0.4-densenet25",
            _selfie("cifar10", "pair", 0.4, "densenet-25-12"),
            "best_test_acc",
            1 - 0.133,
            0.015,
            SELFIE_SRC + ": SELFIE, pair 40 %, error 13.3",
            SELFIE_NOTE,
        ),
        Preset(
            "selfie-cifar100-pair-0.4-densenet25",
            _selfie("cifar100", "pair", 0.4, "densenet-25-12"),
            "best_test_acc",
            1 - 0.412,
            0.02,
            SELFIE_SRC + ": SELFIE, pair 40 %, error 41.2",
            SELFIE_NOTE,
        ),
        Preset(
            "selfie-cifar10-sym-0.4-densenet25",
            _selfie("cifar10", "symmetric", 0.4, "densenet-25-12"),
            "best_test_acc",
            1 - 0.134,
            0.015,
            SELFIE_SRC + ": SELFIE, symmetric 40 %, error 13.4",
            SELFIE_NOTE,
        ),
        Preset(
            "selfie-cifar100-sym-0.4-densenet25",
            _selfie("cifar100", "symmetric", 0.4, "densenet-25-12"),
            "best_test_acc",
            1 - 0.371,
            0.02,
            SELFIE_SRC + ": SELFIE, symmetric 40 %, error 37.1",
            SELFIE_NOTE,
        ),
        Preset(
            "standard-cifar10-pair-0.4-densenet25",
            _selfie("cifar10", "pair", 0.4, "densenet-25-12", "standard"),
            "best_test_acc",
            1 - 0.184,
            0.015,
            SELFIE_SRC + ": Default, pair 40 %, error 18.4",
            SELFIE_NOTE,
        ),
        Preset(
            "coteaching-cifar10-pair-0.4-densenet25",
            _selfie("cifar10", "pair", 0.4, "densenet-25-12", "coteaching"),
            "best_test_acc",
            1 - 0.153,
            0.015,
            SELFIE_SRC + ": Co-teaching, pair 40 %, error 15.3",
            SELFIE_NOTE,
        ),
        Preset(
            "activebias-cifar10-pair-0.4-densenet25",
            _selfie("cifar10", "pair", 0.4, "densenet-25-12", "active-bias"),
            "best_test_acc",
            1 - 0.175,
            0.015,
            SELFIE_SRC + ": ActiveBias, pair 40 %, error 17.5",
            SELFIE_NOTE,
        ),
        Preset(
            "coteaching-cifar10-sym-0.5",
            dict(COTEACHING_OFFICIAL, noise="symmetric", noise_rate=0.5, tau=0.5),
            "last_test_acc",
            0.7449,
            0.02,
            "Co-teaching official README (bhanML/Co-teaching), CIFAR-10 Symmetry 50 %, 9-layer "
            "CNN, spec/methods.md §9.4",
            "the official Adam schedule (lr_schedule linear-decay: linear decay to 0 from "
            "epoch 80, β1 0.9 → 0.1); the official reports the last epoch",
        ),
        Preset(
            "coteaching-cifar10-pair-0.45",
            dict(COTEACHING_OFFICIAL, noise="pair", noise_rate=0.45, tau=0.45),
            "last_test_acc",
            0.7285,
            0.02,
            "Co-teaching official README, CIFAR-10 Pair 45 %, 9-layer CNN, spec/methods.md §9.4",
            "the official Adam schedule (lr_schedule linear-decay from epoch 80, β1 0.9 → 0.1)",
        ),
        Preset(
            "incv-cifar10-sym-0.5",
            dict(INCV_BASE, method="incv", noise="symmetric", noise_rate=0.5),
            "last_test_acc",
            0.8478,
            0.01,
            INCV_SRC + ": INCV, Sym. 0.5, 84.78 ± 0.33",
            "README table assumed identical to the paper's [UNVERIFIED]",
        ),
        Preset(
            "incv-cifar10-sym-0.2",
            dict(INCV_BASE, method="incv", noise="symmetric", noise_rate=0.2),
            "last_test_acc",
            0.8971,
            0.01,
            INCV_SRC + ": INCV, Sym. 0.2, 89.71 ± 0.18",
        ),
        Preset(
            "incv-cifar10-asym-0.4",
            dict(INCV_BASE, method="incv", noise="pair", noise_rate=0.4),
            "last_test_acc",
            0.8604,
            0.015,
            INCV_SRC + ": INCV, Asym. 0.4 (INCV's asym = pair), 86.04 ± 0.54",
        ),
        Preset(
            "ieg-cifar100-uniform-0.8",
            dict(IEG_BASE, noise_rate=0.8),
            "last_test_acc",
            0.755,
            0.01,
            IEG_SRC + ": 75.5 ± 0.2 % at 80 % uniform noise, 10 trusted images per class",
        ),
        Preset(
            "ieg-cifar100-uniform-0.4",
            dict(IEG_BASE, noise_rate=0.4),
            "last_test_acc",
            0.802,
            0.01,
            IEG_SRC + ": 80.2 ± 0.3 % at 40 % uniform noise, 10 trusted images per class",
        ),
    ]
}


def get_preset(name: str) -> Preset:
    """The preset ``name``; an unknown name fails with the list of valid ones."""
    if name not in PRESETS:
        raise UnknownNameError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


def compare(preset: Preset, summary: dict[str, Any]) -> dict[str, Any]:
    """Our value of the preset's metric vs the published one: {ours, published, diff, ok}."""
    ours = summary.get(preset.metric)
    diff = None if ours is None else ours - preset.published
    return {
        "preset": preset.name,
        "metric": preset.metric,
        "ours": ours,
        "published": preset.published,
        "diff": diff,
        "tolerance": preset.tolerance,
        "within_tolerance": None if diff is None else abs(diff) <= preset.tolerance,
        "source": preset.source,
        "note": preset.note,
    }
