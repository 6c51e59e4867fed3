"""Errors a user can cause. Each carries the fix, so the CLI can print one clear line instead of a traceback."""

from __future__ import annotations


class GaiaBenchError(Exception):
    """Base class: ``message`` says what is wrong, ``hint`` says how to fix it.

    ``exit_code`` is what the CLI exits with: 2 for bad input (usage), 1 for a failure at run time."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(GaiaBenchError):
    """A bad command-line value: unknown name, malformed --shots, out-of-range number."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A name that no plugin registered; the message suggests the closest registered names."""


class DataError(GaiaBenchError):
    """Dataset files missing, unreadable or inconsistent."""


class MissingWeightsError(GaiaBenchError):
    """Published weights that are not on this machine and cannot be downloaded (--offline, a pip package)."""

    exit_code = 2


class PluginError(GaiaBenchError):
    """A plugin broke a contract (bad registration, wrong type, duplicate name)."""
