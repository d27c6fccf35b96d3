"""The one exception tree of custseg.

Every error a user can cause is a :class:`CustsegError`; the CLI maps each branch to an
exit code and prints its message as a one-line headline (no traceback). Anything else
escaping is a bug in custseg.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CustsegError",
    "DataError",
    "DeployError",
    "MemoryLimitError",
    "ModelError",
    "RegistryError",
    "StoreError",
    "TrainError",
    "WaitTimeout",
]


class CustsegError(Exception):
    """Base of every error a user can cause and fix."""

    exit_code = 1


class ConfigError(CustsegError):
    """The config file or an override is invalid (names the key path)."""

    exit_code = 2


class DataError(CustsegError):
    """The input data cannot be read or does not fit the schema (names file, row, column)."""

    exit_code = 3


class MemoryLimitError(DataError):
    """The data needs more memory than this process may take, for the engine asked
    (refused before reading when the estimate says so, or met as a MemoryError); a data
    error: the fix is another engine, more memory or fewer rows."""


class TrainError(CustsegError):
    """The data is readable but cannot be segmented as asked (e.g. fewer distinct rows than k)."""

    exit_code = 4


class ModelError(CustsegError):
    """A model artifact is missing, corrupted or cannot score the given input."""

    exit_code = 5


class StoreError(CustsegError):
    """The store (SQLite file, artifact location) cannot be opened or has no such record."""

    exit_code = 6


class RegistryError(CustsegError):
    """A model version does not exist, or an approval change is not allowed."""

    exit_code = 7


class DeployError(CustsegError):
    """An endpoint could not be created, updated or rolled back."""

    exit_code = 8


class WaitTimeout(CustsegError):
    """A followed execution had not ended within the time given; it goes on where it runs."""

    exit_code = 124  # as timeout(1)
