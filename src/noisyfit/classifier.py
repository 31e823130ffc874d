"""``noisyfit.RobustClassifier``: train a noisy-label method with the sklearn/cleanlab idiom.

::

    clf = noisyfit.RobustClassifier(method="coteaching", model="mlp", epochs=20)
    clf.fit(X, y)                      # numpy arrays, torch tensors, or a torch Dataset
    clf.predict(X_new), clf.predict_proba(X_new)     # (n,), (n, K)
    issues = clf.label_issues()        # the method's verdicts: LabelIssues over the rows of X

``model`` is a registered name (``noisyfit list models``; default ``mlp`` for feature vectors,
``cnn-small`` for images), ``"torchvision:NAME"`` with ``weights=`` a local state_dict file, an
``nn.Module`` factory ``(num_classes, input_shape) -> nn.Module``, or an ``nn.Module``.
Each ``fit`` is one :func:`noisyfit.train` run; its run folder (``run_dir_``) lies under
``out`` (default: a fresh temporary folder).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .api import train
from .config import TrainConfig
from .data.loader import DeviceLoader
from .data.memory import from_arrays
from .engine.evaluate import predict_probs
from .errors import ConfigError
from .issues import issues_from_run


def predict_inputs(
    model: torch.nn.Module,
    x: np.ndarray,
    *,
    mean,
    std,
    normalize: str = "channel",
    device: torch.device | str = "cpu",
    batch_size: int = 1000,
) -> np.ndarray:
    """(n, K) softmax probabilities of ``model`` on inputs ``x`` (the layout of the training
    data: uint8 (n, C, H, W) or float32 (n, D)), normalized as in training."""
    if len(x) == 0:
        raise ConfigError("no inputs to predict")
    loader = DeviceLoader(
        x,
        np.zeros(len(x), dtype=np.int64),
        batch_size=batch_size,
        mean=mean,
        std=std,
        normalize=normalize,
        shuffle=False,
        device=device,
    )
    with torch.no_grad():
        return predict_probs(model, loader).cpu().numpy()


class RobustClassifier:
    """A classifier trained with a noisy-label method (sklearn-style).

    Args:
        method: a registered method (``noisyfit list methods``), e.g. ``coteaching``.
        model: see the module docstring (None: ``mlp`` for features, ``cnn-small`` for images).
        epochs: training epochs.
        weights: local weights file for ``model="torchvision:NAME"``.
        method_options: the method's options, e.g. ``{"t_k": "5"}``.
        out: parent folder of the run folders (None: a temporary folder).
        **config: any other TrainConfig field (``lr``, ``batch_size``, ``device``, ``seed``...).

    Attributes (after ``fit``): ``classes_`` (K,), ``class_names_``, ``result_`` (the
    TrainResult), ``run_dir_``, ``model_`` (the main network), ``input_shape_``.
    """

    def __init__(
        self,
        method: str = "coteaching",
        model: Any = None,
        epochs: int = 10,
        *,
        weights: str | Path | None = None,
        method_options: dict[str, Any] | None = None,
        out: str | Path | None = None,
        **config: Any,
    ):
        self.method = method
        self.model = model
        self.epochs = epochs
        self.weights = weights
        self.method_options = method_options or {}
        self.out = out
        self.config = config

    def fit(self, X, y=None, *, class_names=None) -> RobustClassifier:
        """Train on inputs ``X`` with (possibly wrong) labels ``y``; ``X`` may instead be a
        torch Dataset of (input, label) pairs (then ``y`` is None). Returns self."""
        ds = from_arrays(X, y, class_names=class_names)
        model = self.model if self.model is not None else ("cnn-small" if ds.is_image else "mlp")
        out = self.out if self.out is not None else tempfile.mkdtemp(prefix="noisyfit-")
        cfg = TrainConfig(
            **{
                "noise": "none",
                "progress": False,
                "checkpoint": False,
                **self.config,
                "method": self.method,
                "epochs": self.epochs,
                "out": str(out),
                "method_options": {str(k): str(v) for k, v in self.method_options.items()},
            }
        )
        self.result_ = train(cfg, dataset=ds, model=model, weights=self.weights, report=False)
        self.run_dir_ = self.result_.run_dir
        self.model_ = self.result_.method.main_model
        self._norm = dict(mean=ds.mean, std=ds.std, normalize=cfg.normalize)
        self._batch = cfg.eval_batch_for(next(self.model_.parameters()).device)
        self.input_shape_ = ds.input_shape
        self.is_image_ = ds.is_image
        self.class_names_ = list(ds.class_names)
        self.classes_ = np.arange(ds.num_classes)
        return self

    def _check(self):
        if not hasattr(self, "model_"):
            raise ConfigError("this RobustClassifier is not fitted yet; call fit(X, y) first")

    def predict_proba(self, X) -> np.ndarray:
        """(n, K) class probabilities of the trained network (columns: ``classes_``)."""
        self._check()
        x = from_arrays(X, np.zeros(len(X), dtype=np.int64), num_classes=len(self.classes_)).x
        if tuple(x.shape[1:]) != tuple(self.input_shape_):
            raise ConfigError(
                f"inputs have shape {tuple(x.shape[1:])} per row; the classifier was fitted on "
                f"{tuple(self.input_shape_)}"
            )
        dev = next(self.model_.parameters()).device
        return predict_inputs(self.model_, x, device=dev, batch_size=self._batch, **self._norm)

    def predict(self, X) -> np.ndarray:
        """(n,) predicted class indices."""
        return self.predict_proba(X).argmax(1)

    def score(self, X, y) -> float:
        """Accuracy of ``predict(X)`` against ``y``."""
        y = y.detach().cpu().numpy() if torch.is_tensor(y) else np.asarray(y)
        return float((self.predict(X) == y).mean())

    def label_issues(self):
        """The fitted method's verdict on every training row (a
        :class:`~noisyfit.issues.LabelIssues`; ``is_label_issue`` = dropped or relabelled,
        ``pred_probs`` the main network's in-sample probabilities), also written to the run
        folder as label_issues.csv. For out-of-sample flags use :func:`noisyfit.find_issues`."""
        self._check()
        res = issues_from_run(self.result_)
        res.class_names = self.class_names_
        return res
