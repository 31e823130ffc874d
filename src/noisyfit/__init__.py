"""noisyfit: train deep networks on noisy labels, and find the wrong labels.

Public API::

    import noisyfit
    result = noisyfit.train(dataset="fashion-mnist", noise="symmetric", noise_rate=0.4)
    noisy = noisyfit.inject_noise(labels, "pair", 0.4, num_classes=10, seed=0)
    issues = noisyfit.find_issues(dataset="arrays", data_dir="mine.npz", noise="none")
    mask = noisyfit.find_label_issues(labels=given, pred_probs=probs)   # cleanlab's meaning
    clf = noisyfit.RobustClassifier(method="coteaching", model="mlp", epochs=5).fit(X, y)
    noisyfit.list_methods()
"""

import importlib

from ._version import __version__  # noqa: E402
from .api import TrainResult, train  # noqa: E402
from .classifier import RobustClassifier  # noqa: E402
from .config import TrainConfig  # noqa: E402
from .issues import LabelIssues, find_issues, find_label_issues  # noqa: E402
from .noise import NOISE_KINDS, inject_noise, transition_matrix  # noqa: E402


def _names(registry_module: str, attr: str, pattern: str) -> list[str]:
    mod = importlib.import_module(f"noisyfit.{registry_module}")
    importlib.import_module(f"noisyfit.{registry_module}._builtin")
    return getattr(mod, attr).names(pattern)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching a wildcard pattern."""
    return _names("data", "DATASETS", pattern)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a wildcard pattern."""
    return _names("models", "MODELS", pattern)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching a wildcard pattern."""
    return _names("methods", "METHODS", pattern)


def list_noise(pattern: str = "*") -> list[str]:
    """Noise kinds matching a wildcard pattern."""
    return NOISE_KINDS.names(pattern)


__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "find_label_issues",
    "find_issues",
    "RobustClassifier",
    "LabelIssues",
    "inject_noise",
    "transition_matrix",
    "list_datasets",
    "list_models",
    "list_methods",
    "list_noise",
    "__version__",
]
