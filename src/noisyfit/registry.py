"""One registry class for datasets, models, methods and noise kinds.

A registry maps a name to an object (a builder function or a class). Registration is by
decorator; lookup of an unknown name fails with the sorted list of valid names; listing accepts
shell-style wildcards (``list("densenet*")``).

Example::

    MODELS = Registry("model")

    @MODELS.register("cnn-small")
    def cnn_small(num_classes: int, in_channels: int, image_size: int) -> nn.Module: ...

    MODELS.get("cnn-small")        # the function
    MODELS.names("densenet-*")     # ['densenet-10-12', 'densenet-25-12', 'densenet-40-12']
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterator
from typing import Any

from .errors import NoisyfitError


class UnknownNameError(NoisyfitError, KeyError):
    """An unknown registry name; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class Registry:
    """A name → object table with decorator registration and wildcard listing.

    Args:
        kind: what the registry holds ("dataset", "model", "method", "noise kind"); used in
            error messages.
        builtin: a module that registers the built-in entries (``noisyfit.methods._builtin``),
            imported on the first lookup, so every lookup sees them wherever it happens.
    """

    def __init__(self, kind: str, *, builtin: str | None = None):
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._help: dict[str, str] = {}
        self._builtin = builtin

    def _load_builtin(self) -> None:
        if self._builtin is not None:
            module, self._builtin = self._builtin, None  # once (and not again while importing)
            importlib.import_module(module)

    def register(self, name: str, *, help: str | None = None) -> Callable[[Any], Any]:
        """Decorator: register ``obj`` under ``name`` (names are unique, lower case)."""

        def deco(obj: Any) -> Any:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            doc = help if help is not None else (obj.__doc__ or "").strip().split("\n")[0]
            self._help[name] = doc
            return obj

        return deco

    def get(self, name: str) -> Any:
        """The object registered as ``name``; an unknown name raises with the valid names."""
        self._load_builtin()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: "
                f"{', '.join(sorted(self._items))}."
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell wildcard pattern."""
        self._load_builtin()
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def describe(self, name: str) -> str:
        """One line of help for ``name`` (the first docstring line of what it holds)."""
        self.get(name)
        return self._help[name]

    def __contains__(self, name: object) -> bool:
        self._load_builtin()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load_builtin()
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
