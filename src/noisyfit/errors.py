"""noisyfit's own error types: errors a user can fix, as opposed to bugs.

The ``noisyfit`` command prints a :class:`NoisyfitError` as one line (what, where, the fix) and
exits with status 2; any other exception is a bug and shows its traceback. ``--debug`` (or
``NOISYFIT_DEBUG=1``) shows the traceback of a NoisyfitError too.

Each subclass also derives from the built-in type such errors used to be (``ValueError``,
``RuntimeError``), so ``except ValueError`` in user code keeps working.
"""

from __future__ import annotations


class NoisyfitError(Exception):
    """Base of every error a user can fix: the message names the file, the problem, the fix."""


class ConfigError(NoisyfitError, ValueError):
    """A bad option or config file: the message names the key, the valid choices, the fix."""


class DataError(NoisyfitError, ValueError):
    """A data file that is missing, truncated or not in the expected format."""


class NoiseError(NoisyfitError, ValueError):
    """Bad noise settings or noise files."""


class MissingFileError(NoisyfitError, FileNotFoundError):
    """A file or folder the user named does not exist (the message says what to pass)."""


class RunError(NoisyfitError, RuntimeError):
    """A run folder that cannot be used as asked (locked, finished, changed, corrupt)."""


class RunLockedError(RunError):
    """Another process holds the run folder's lock."""


class CheckpointError(RunError):
    """A checkpoint that cannot be read (empty, truncated, not a noisyfit checkpoint)."""


class DataWarning(UserWarning):
    """Data that loads but looks wrong (fewer records than the release, an empty class folder);
    also recorded in the run folder's ``data_source.json``."""


class RunExistsError(RunError, FileExistsError):
    """The run folder already holds a run (finished, or with a checkpoint to resume)."""


class NoCheckpointError(RunError, FileNotFoundError):
    """``--resume`` of a run folder that has no checkpoint yet."""
