"""The package version (one place; the package and env.json read it)."""

__version__ = "0.1.0"
