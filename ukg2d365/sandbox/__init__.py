"""The local sandbox: simulated Entra ID, UKG Pro and D365 F&O over HTTPS on 127.0.0.1.

```python
with Sandbox(tmp_path, employees=60) as sb:      # starts: ports, CA, config file
    requests.get(sb.urls.ukg + "/configuration/v1/org-levels", verify=str(sb.ca_path), ...)
    sb.faults.add(FaultRule("d365", "status", status=429, retry_after="1", path_regex=r"\\$batch"))
    sb.dataset.close_period()                    # a new GL run appears
```
Used by ``ukg2d365 sandbox`` (the demo), the end-to-end tests and the benchmark. All credentials are
the throwaway values of ``catalog``; the listeners bind to loopback only.
"""

from __future__ import annotations

import datetime as dt
import shlex
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import yaml

from ukg2d365.http import prompt_thread_switches
from ukg2d365.sandbox import catalog
from ukg2d365.sandbox.d365 import D365Service, D365State
from ukg2d365.sandbox.d365.dmf import CostModel
from ukg2d365.sandbox.data import DEFAULT_EMPLOYEES, DEFAULT_SEED, GlRun, PayPeriod, RawJson, UkgDataset
from ukg2d365.sandbox.entra import EntraService
from ukg2d365.sandbox.faults import FaultRule, FaultSet
from ukg2d365.sandbox.gl_export import csv_file_source
from ukg2d365.sandbox.server import AdminApi, ServiceServer, Stats
from ukg2d365.sandbox.tls import TlsMaterial, generate
from ukg2d365.sandbox.tokens import TokenRegistry
from ukg2d365.sandbox.ukg import UkgService

__all__ = [
    "Sandbox",
    "SandboxUrls",
    "FaultRule",
    "FaultSet",
    "UkgDataset",
    "GlRun",
    "PayPeriod",
    "RawJson",
    "TokenRegistry",
    "serve_forever_cli",
    "CONFIG_NAME",
    "CostModel",
]

CONFIG_NAME = "ukg2d365.yaml"
CA_NAME = "ca.pem"
SERVICES = ("entra", "ukg", "d365")

@dataclass(frozen=True)
class SandboxUrls:
    entra: str
    ukg: str
    d365: str

    def __getitem__(self, name: str) -> str:
        return str(getattr(self, name))

    def __iter__(self) -> Iterator[str]:
        return iter(SERVICES)


class Sandbox:
    """Three HTTPS simulators plus the files a client needs (``ca.pem``, ``ukg2d365.yaml``)."""

    def __init__(
        self,
        dir: Path | str,
        *,
        port: int = 0,
        employees: int = DEFAULT_EMPLOYEES,
        latency_ms: int = 0,
        token_lifetime: int = 3599,
        today: dt.date | None = None,
        seed: int = DEFAULT_SEED,
        verbose: bool = False,
        companies: int = 1,
        client_id: str = catalog.CLIENT_ID,
        client_secret: str = catalog.CLIENT_SECRET,
        cost: CostModel | None = None,
    ) -> None:
        """``cost``: what a real F&O spends per OData line and per DMF import (sandbox/d365/dmf.py); off by default."""
        if port and not 1 <= port <= 65533:
            raise ValueError("port must be 0 (pick free ports) or 1..65533 (uses port, port+1, port+2)")
        self.dir = Path(dir)
        self.port = port
        self.verbose = verbose
        self.companies = companies
        # The app registration the config names and Entra accepts (another customer's sandbox: another app).
        self.client_id = client_id
        self.client_secret = client_secret
        self.dataset = UkgDataset(employees, seed=seed, today=today, companies=companies)
        self.tokens = TokenRegistry(lifetime_seconds=token_lifetime)
        self.faults = FaultSet(latency_ms)
        self.faults.revoke_hook = self.tokens.revoke_all
        self._switches = ExitStack()  # undoes what start() changed process-wide
        self.ca_path = self.dir / CA_NAME
        self.config_path = self.dir / CONFIG_NAME
        self._urls: SandboxUrls | None = None
        self.d365: Any = None  # the D365Service once started (its data: .d365.state)
        self.entra: EntraService | None = None
        self.ukg = UkgService(self.dataset)
        self.cost = cost or CostModel()
        self._stats = Stats(SERVICES)
        self._servers: dict[str, ServiceServer] = {}
        self._tls: TlsMaterial | None = None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> Sandbox:
        if self._servers:
            raise RuntimeError("sandbox already started")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._tls = generate()
        context = self._tls.server_context()  # the context holds the key: no copy is on disk while we run
        try:
            for i, name in enumerate(SERVICES):
                self._servers[name] = ServiceServer(
                    name,
                    port=self.port + i if self.port else 0,
                    context=context,
                    faults=self.faults,
                    stats=self._stats,
                    verbose=self.verbose,
                )
            urls = SandboxUrls(**{name: srv.url for name, srv in self._servers.items()})
            self._urls = urls
            self.d365 = D365Service(D365State.seeded(), self.tokens, urls.d365, cost=self.cost)
            self._seed_entities()
            self.entra = EntraService(
                self.tokens,
                catalog.TENANT_ID,
                self.client_id,
                self.client_secret,
                resource=urls.d365,
                base_url=urls.entra,
            )
            self._servers["entra"].service = self.entra
            self._servers["entra"].admin = AdminApi(self.faults, self.tokens, self._stats)
            self._servers["ukg"].service = self.ukg
            self._servers["d365"].service = self.d365
            self._tls.write_ca(self.ca_path)
            self.write_config()
            for srv in self._servers.values():
                srv.start()
            # Handler threads wait on sockets while others build answers: hand the GIL over promptly, as
            # a server on its own machine would answer (see prompt_thread_switches). Undone by stop().
            self._switches.enter_context(prompt_thread_switches())
        except BaseException:
            self.stop()
            raise
        return self

    def _seed_entities(self) -> None:
        """The intercompany and accrued-payroll main accounts; with two companies, the two other legal entities."""
        state = self.d365.state
        for account, name, kind in catalog.D365_ENTITY_MAIN_ACCOUNTS:
            state.add_main_account(account, name, kind)
        if self.companies == 2:
            for entity in (catalog.LEGAL_ENTITY_2, catalog.LEGAL_ENTITY_3):
                state.add_legal_entity(entity)

    def stop(self) -> None:
        """Stop every listener and handler thread, and drop the TLS material. Safe to call twice."""
        servers, self._servers = self._servers, {}
        # in parallel: each listener's serve_forever loop takes up to a poll interval to notice
        stoppers = [threading.Thread(target=srv.stop, name=f"sandbox-stop-{srv.name}") for srv in servers.values()]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        self._tls = None
        self._switches.close()

    @property
    def urls(self) -> SandboxUrls:
        """Base URLs of the three services (known once started; kept after stop for messages)."""
        if self._urls is None:
            raise RuntimeError("the sandbox is not started: its ports are not chosen yet")
        return self._urls

    @property
    def running(self) -> bool:
        return bool(self._servers)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -------------------------------------------------------------- what a client needs

    def stats(self) -> dict[str, int]:
        """Requests received per service since start (admin API calls not counted)."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    def env(self, profile: str | None = None) -> dict[str, str]:
        """The credential env vars a client needs (throwaway sandbox values); a profile's own with ``profile``."""
        prefix = "UKG2D365_" + (f"{profile.upper()}_" if profile else "")
        return {
            f"{prefix}UKG_USERNAME": catalog.UKG_USERNAME,
            f"{prefix}UKG_PASSWORD": catalog.UKG_PASSWORD,
            f"{prefix}UKG_CUSTOMER_API_KEY": catalog.UKG_CUSTOMER_API_KEY,
            f"{prefix}UKG_USER_API_KEY": catalog.UKG_USER_API_KEY,
            f"{prefix}D365_CLIENT_SECRET": self.client_secret,
        }

    def config_dict(self) -> dict[str, Any]:
        return {
            "ukg": {
                "base_url": self.urls.ukg,
                "pay_groups": [catalog.PAY_GROUP],
                "ca_bundle": CA_NAME,
            },
            "d365": {
                "base_url": self.urls.d365,
                "tenant_id": catalog.TENANT_ID,
                "client_id": self.client_id,
                "authority_host": self.urls.entra,
                "legal_entity": catalog.LEGAL_ENTITY,
                "journal_name": catalog.JOURNAL_NAME,
                "currency": catalog.CURRENCY,
                "ca_bundle": CA_NAME,
                # the sandbox runs a timed-out request within moments, not minutes as a busy AOS may
                "settle_seconds": 0.5,
            },
            "mapping": {
                "delimiter": catalog.DELIMITER,
                "main_accounts": {a.ukg_account: a.d365_account for a in catalog.GL_ACCOUNTS},
                "dimensions": {
                    "CostCenter": {"source": "orgLevel1", "create_in": "FinancialDimensionValues"},
                    "Department": {
                        "source": "orgLevel2",
                        "create_in": "OperatingUnits",
                        "operating_unit_type": "OMDepartment",
                    },
                },
            },
            # No ledger_format / default_dimensions guards: display values follow the sandbox D365's own
            # formats, which hold dimensions UKG does not feed (left blank), as a customer's usually do.
            "ledger": {"path": "ukg2d365.db"},
            # post-payroll --from-file reads GL runs the sandbox wrote with `ukg2d365 sandbox --export-gl`
            "file_source": csv_file_source(),
            # accrue-payroll: the expense accounts' share of a period straddling a month-end, reversing.
            "accruals": {
                "accounts": [a.ukg_account for a in catalog.GL_ACCOUNTS if a.main_account_type == "Expense"],
                "liability_account": catalog.ACCRUED_PAYROLL_ACCOUNT,
            },
            **(self._entities_config() if self.companies == 2 else {}),
        }

    @staticmethod
    def _entities_config() -> dict[str, Any]:
        return {"legal_entities": {
            "by_company": {catalog.UKG_CO_ID: catalog.LEGAL_ENTITY.upper(),
                           catalog.UKG_CO_ID_2: catalog.LEGAL_ENTITY_2.upper()},
            "by_dimension": {"dimension": "CostCenter",
                             "values": {catalog.BEARING_COST_CENTER: catalog.LEGAL_ENTITY_3.upper()}},
            "intercompany": {"due_from_account": catalog.DUE_FROM_ACCOUNT,
                             "due_to_account": catalog.DUE_TO_ACCOUNT},
        }}

    def write_config(self, path: Path | None = None) -> Path:
        """Write a config that ``ukg2d365.config.load_config`` accepts; relative paths sit beside it."""
        target = path or self.config_path
        urls = self.urls
        header = (
            "# Written by the ukg2d365 sandbox for its local simulators (throwaway data and credentials).\n"
            f"# Entra ID {urls.entra}, UKG Pro {urls.ukg}, D365 F&O {urls.d365}.\n"
            "# Secrets are not in this file: export the env vars `ukg2d365 sandbox` printed.\n"
            "# ca_bundle and ledger.path are relative to this file's folder.\n"
            "# With port 0 the ports change on every start: let the sandbox rewrite this file.\n\n"
        )
        body = yaml.safe_dump(self.config_dict(), sort_keys=False, default_flow_style=False, allow_unicode=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(header + body, encoding="utf-8")
        return target

    def export_lines(self) -> list[str]:
        # absolute: the lines are pasted into another shell, which may stand in another folder
        lines = [f"export UKG2D365_CONFIG={shlex.quote(str(self.config_path.resolve()))}"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.env().items()]
        return lines


def serve_forever_cli(dir: Path | str, port: int, employees: int, latency_ms: int, companies: int = 1,
                      cost: CostModel | None = None) -> None:
    """``ukg2d365 sandbox``: run until Ctrl-C or SIGTERM, then stop cleanly."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    sandbox = Sandbox(Path(dir), port=port, employees=employees, latency_ms=latency_ms, companies=companies,
                      cost=cost)
    try:
        sandbox.start()
        closed = sandbox.dataset.closed_periods()
        print("ukg2d365 sandbox is running (Ctrl-C to stop)")
        print(f"  Entra ID   {sandbox.urls.entra}")
        print(f"  UKG Pro    {sandbox.urls.ukg}")
        print(f"  D365 F&O   {sandbox.urls.d365}")
        print(f"  config     {sandbox.config_path}")
        print(f"  CA         {sandbox.ca_path}")
        print(
            f"  data       {len(sandbox.dataset.employees)} employees, {len(sandbox.dataset.gl_runs)} GL runs "
            f"({', '.join(r.run_id for r in sandbox.dataset.gl_runs)}); "
            f"last closed period ends {closed[-1].period_end if closed else '-'}"
        )
        if companies == 2:
            print(f"  entities   UKG {catalog.UKG_CO_ID} paid by {catalog.LEGAL_ENTITY.upper()}, "
                  f"{catalog.UKG_CO_ID_2} by {catalog.LEGAL_ENTITY_2.upper()}; cost center "
                  f"{catalog.BEARING_COST_CENTER} borne by {catalog.LEGAL_ENTITY_3.upper()} (legal_entities: in the "
                  "config)")
        print("\nIn another shell:")
        for line in sandbox.export_lines():
            print(line)
        print(flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("ukg2d365 sandbox stopped")
