"""Optional TensorBoard logging (``--tensorboard``): every numeric per-epoch metric of
``metrics.jsonl`` (accuracy, losses, learning rate, label precision/recall, throughput) as a
scalar in ``RUN_DIR/tensorboard/``, grouped by kind. View with
``tensorboard --logdir RUN_DIR/tensorboard``. Needs the ``tensorboard`` package
(``pip install 'noisyfit[tensorboard]'``); written with ``torch.utils.tensorboard``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _group(key: str) -> str:
    if key.startswith("label_") or key in ("selected_fraction", "selected_ratio"):
        return "selection"
    if key.startswith(("test_", "train_")):
        return "accuracy_loss"
    return "run"


class TensorBoardLog:
    """Writes one epoch record per call as scalars (``group/key``, step = epoch)."""

    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency (tensorboard)
        except ImportError as e:
            raise ImportError(
                "--tensorboard needs the tensorboard package: pip install 'noisyfit[tensorboard]'"
            ) from e
        self.dir = Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir))

    def write(self, record: dict[str, Any]) -> None:
        step = int(record["epoch"])
        for k, v in record.items():
            if k == "epoch" or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if math.isfinite(v):
                self.writer.add_scalar(f"{_group(k)}/{k}", float(v), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
