"""Exit statuses and the exception hierarchy, in one place.

Every error a user can meet is one of these. The CLI maps them to an exit status and prints
``str(error)`` as a single line; a traceback is shown only with ``--verbose``.
Messages must never contain a secret: they are built from hosts, paths, codes and statuses only.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    RECORDS_FAILED = 1  # the run finished, some records failed (they are in the ledger)
    USAGE = 2  # usage or configuration error, nothing was sent
    AUTH = 3  # authentication or authorization failed
    UNAVAILABLE = 4  # remote system unavailable or throttled past the retry budget


class Ukg2d365Error(Exception):
    """Base class: a message fit for one terminal line, and the exit status it maps to."""

    exit_status: ExitStatus = ExitStatus.RECORDS_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(Ukg2d365Error):
    """The configuration file (or a command-line value) is wrong; nothing was sent."""

    exit_status = ExitStatus.USAGE


class UsageError(Ukg2d365Error):
    exit_status = ExitStatus.USAGE


class CredentialError(Ukg2d365Error):
    """A secret is missing or the credential store cannot be opened."""

    exit_status = ExitStatus.USAGE


class AuthError(Ukg2d365Error):
    """A remote system refused our credentials (401/403, Entra AADSTS errors)."""

    exit_status = ExitStatus.AUTH


class RemoteUnavailable(Ukg2d365Error):
    """Unreachable, 5xx or throttled past the retry budget."""

    exit_status = ExitStatus.UNAVAILABLE


class RemoteError(Ukg2d365Error):
    """The remote system answered with an error we cannot retry (4xx other than auth)."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class ProtocolError(RemoteError):
    """The remote answered something that is not what the API promises (HTML, truncated JSON, a redirect)."""


class AmbiguousWriteError(Ukg2d365Error):
    """A write may or may not have been processed (timeout or connection dropped after sending).

    The caller must look at the target system before sending anything again.
    """

    exit_status = ExitStatus.UNAVAILABLE


class DataError(Ukg2d365Error):
    """Input data from UKG cannot be posted as is (unmapped, unbalanced, malformed record)."""


class LockBusy(Ukg2d365Error):
    """Another ukg2d365 run holds the ledger lock."""

    exit_status = ExitStatus.UNAVAILABLE
