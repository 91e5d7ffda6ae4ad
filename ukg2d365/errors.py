"""Exit statuses and the exception hierarchy, in one place.

Every error a user can meet is one of these. The CLI maps them to an exit status and prints
``str(error)`` as a single line; a traceback is shown only with ``--verbose``.
Messages must never contain a secret: they are built from hosts, paths, codes and statuses only.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """One meaning per code, so cron, systemd and monitoring can act on the number alone.

    70 and 75 are sysexits.h's EX_SOFTWARE and EX_TEMPFAIL: codes operators already read as "a bug in the
    program" and "try again later" (mail transfer agents retry on 75), distinct from the remote systems' 4.
    """

    OK = 0
    RECORDS_FAILED = 1  # the run finished, some records failed or were refused (they are in the ledger)
    USAGE = 2  # usage or configuration error, nothing was sent
    AUTH = 3  # authentication or authorization failed
    UNAVAILABLE = 4  # remote system unavailable (down, maintenance page, login redirect, throttled past the budget)
    INTERNAL = 70  # EX_SOFTWARE: a bug in ukg2d365; the traceback is in the ledger's audit
    LOCKED = 75  # EX_TEMPFAIL: another run holds the lock; nothing was done, the next run goes on


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


class ServingPageError(ProtocolError):
    """A web page (maintenance, proxy error) or a redirect (a login page) where the API should answer.

    The system is not serving its API right now: "unavailable", like a 503. Still a ProtocolError, so an
    unreadable answer to a write is recovered (looked up) exactly as before.
    """

    exit_status = ExitStatus.UNAVAILABLE


class AmbiguousWriteError(Ukg2d365Error):
    """A write may or may not have been processed (timeout or connection dropped after sending).

    The caller must look at the target system before sending anything again.
    """

    exit_status = ExitStatus.UNAVAILABLE


class DataError(Ukg2d365Error):
    """Input data from UKG cannot be posted as is (unmapped, unbalanced, malformed record)."""


class LockBusy(Ukg2d365Error):
    """Another ukg2d365 run holds the run lock (wherever the lock lives: a file, a database)."""

    exit_status = ExitStatus.LOCKED
