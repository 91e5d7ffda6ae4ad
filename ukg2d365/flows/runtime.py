"""The runtime every front end (CLI, webhook, worker) shares: one place that wires config, ledger, clients.

``Context`` holds everything a flow needs for one run, built lazily from the config (clients, ledger, retry
budget); ``recorded_run`` records the run in the ledger, takes the run lock for commands that write, and
always records the end with its exit code.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ukg2d365.config import Config
from ukg2d365.credentials import CredentialScope, resolve_d365, resolve_ukg
from ukg2d365.d365.auth import TokenProvider
from ukg2d365.d365.dmf import DmfClient
from ukg2d365.d365.odata import ODataClient
from ukg2d365.errors import ConfigError, ExitStatus, Ukg2d365Error
from ukg2d365.http import ConcurrencyLimit, HttpClient, RetryBudget, RetryPolicy, build_session
from ukg2d365.ledger import Ledger, LedgerError
from ukg2d365.ukg.client import UkgClient

# The posting a request belongs to, so HTTP audit events land on the right posting's trail.
current_posting: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_posting", default=None)


class Context:
    def __init__(
        self,
        config: Config,
        *,
        ledger_path: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        record_http: bool = True,
    ) -> None:
        self.config = config
        self._ledger_path = ledger_path
        self._sleep = sleep
        self._record_http = record_http
        self.policy = RetryPolicy.from_config(config.http)
        self.budget = RetryBudget(self.policy.budget_seconds)
        self.requests: Counter[str] = Counter()
        self.d365_limit = ConcurrencyLimit(config.d365.max_in_flight)
        # Whose secrets: credentials.profile's only, or the global ones (a worker's tenants each their own).
        self.credentials = CredentialScope.of(config)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ resources

    @cached_property
    def ledger(self) -> Ledger:
        ledger = open_ledger(self.config, self._ledger_path)
        ledger.adopt_legal_entity(self.config.d365.legal_entity)
        return ledger

    def _ca_bundle(self, value: str | None, key: str) -> str | None:
        path = self.config.resolve(value)
        if path is None:
            return None
        if not path.is_file():
            raise ConfigError(f"{key}: CA bundle {path} does not exist", hint="fix the path or remove the key")
        return str(path)

    def _http(self, system: str, base_url: str, timeout: float, ca_bundle: str | None, **kwargs: Any) -> HttpClient:
        return HttpClient(
            system=system,
            base_url=base_url,
            timeout=timeout,
            ca_bundle=ca_bundle,
            policy=self.policy,
            budget=self.budget,
            session=kwargs.pop("session", None),
            sleep=self._sleep,
            on_event=self._on_http_event,
            **kwargs,
        )

    @cached_property
    def ukg(self) -> UkgClient:
        cfg = self.config.ukg
        base_url = self.config.ukg_api_url()  # before the credentials: a GL-file-only config has neither
        creds = resolve_ukg(scope=self.credentials)
        http = self._http("UKG", base_url, cfg.timeout_seconds, self._ca_bundle(cfg.ca_bundle, "ukg.ca_bundle"))
        client = UkgClient(http, creds, cfg.page_size, cfg.gl_path)
        client.prefetch = cfg.prefetch_pages
        return client

    @cached_property
    def d365(self) -> ODataClient:
        cfg = self.config.d365
        creds = resolve_d365(scope=self.credentials)
        ca = self._ca_bundle(cfg.ca_bundle, "d365.ca_bundle")
        session = build_session()
        session.verify = ca or True
        tokens = TokenProvider(cfg, creds.client_secret, session, set_secret=self.credentials.set_command("d365"))
        http = self._http("D365", cfg.base_url, cfg.timeout_seconds, ca, session=session)
        return ODataClient(http, tokens)

    @cached_property
    def dmf(self) -> DmfClient:
        """The package API on the D365 client; blob transfers through their own HttpClient per blob origin,
        with no D365 token (the SAS in the URL is the blob's authorization), trusting d365.ca_bundle."""
        cfg = self.config.d365
        ca = self._ca_bundle(cfg.ca_bundle, "d365.ca_bundle")

        def blob_http(origin: str) -> HttpClient:
            return self._http("blob", origin, cfg.timeout_seconds, ca)

        return DmfClient(self.d365, blob_http, sleep=self._sleep)

    # ------------------------------------------------------------------ events

    def _on_http_event(self, event: dict[str, Any]) -> None:
        throttled = event.get("throttled") or event.get("status") == 429
        if throttled and event.get("system") == "D365":
            self.d365_limit.throttled()
        if event.get("throttled"):
            return  # a wait, not a request
        with self._lock:
            self.requests[str(event.get("system"))] += 1
        if self._record_http and "ledger" in self.__dict__:
            self.ledger.audit("http", event, current_posting.get())

    def close(self) -> None:
        if "ledger" in self.__dict__:
            self.ledger.close()


def run_audit_key(run_id: int | None) -> str:
    """The audit key of a run's own events (an internal error's traceback): ``ukg2d365 audit run:N``."""
    return f"run:{run_id}"


def internal_error_line(exc: BaseException) -> str:
    """An unexpected exception in one line: its class and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def open_ledger(config: Config, ledger_path: Path | None = None) -> Ledger:
    """The config's ledger, as its tenant: ``--ledger PATH`` (a SQLite file) wins over ``ledger.url`` / ``path``."""
    return Ledger(ledger_path or config.ledger_location, config.ledger_tenant)


@dataclass
class RecordedRun:
    """A command's run as the ledger records it: who, when, arguments, exit code and summary."""

    context: Context
    config: Config
    summary: dict[str, Any]
    code: int = int(ExitStatus.RECORDS_FAILED)
    traceback_key: str | None = None  # set when an internal error's traceback was audited


@contextmanager
def recorded_run(
    config: Config,
    command: str,
    args: dict[str, Any],
    *,
    lock: bool,
    ledger_path: Path | None = None,
    record_http: bool = True,
) -> Iterator[RecordedRun]:
    """Open the ledger, record the run, take the run lock when the command writes, and always record the end.

    The body sets ``run.code``; an error sets it from the error's exit status and is re-raised.
    """
    context = Context(config, ledger_path=ledger_path, record_http=record_http)
    run = RecordedRun(context, config, {})
    try:
        context.ledger.start_run(command, args)
    except BaseException:
        context.close()
        raise
    try:
        if lock:
            context.ledger.acquire_lock(config.ledger.lock_timeout_seconds)
        yield run
    except Ukg2d365Error as exc:
        run.code = int(exc.exit_status)
        run.summary["error"] = str(exc)
        raise
    except Exception as exc:
        # A bug: its traceback goes to the audit trail under this run (``ukg2d365 audit run:N``), not the screen.
        run.code = int(ExitStatus.INTERNAL)
        run.summary["error"] = f"internal error (this is a bug): {internal_error_line(exc)}"
        with contextlib.suppress(Exception):  # the ledger itself may be what broke; the screen still says it
            key = run_audit_key(context.ledger.run_id)
            context.ledger.audit("internal error", {"exception": type(exc).__name__,
                                                    "traceback": "".join(traceback.format_exception(exc))}, key)
            run.traceback_key = key
        raise
    finally:
        try:
            # A ledger that went away mid-run cannot record the end: the error that stopped the run says so.
            with contextlib.suppress(LedgerError):
                context.ledger.finish_run(run.code, run.summary)
        finally:
            context.close()
