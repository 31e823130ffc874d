"""Importing this module registers every built-in method: every module of this package whose
name does not start with an underscore, except ``base`` (one file per method)."""

import importlib
import pkgutil
from pathlib import Path

for _m in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if not _m.name.startswith("_") and _m.name != "base":
        importlib.import_module(f"{__package__}.{_m.name}")
