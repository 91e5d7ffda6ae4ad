"""The Typer app, its global options, and ``command()``: the one place a command's errors become exit codes.

Every command module (``payroll``, ``accruals``, ``sync``, ``reconcile``, ``ledger``, ``credentials``, ``webhook``,
``sandbox``, ``ping``) imports this module and nothing else from ``ukg2d365.cli``; business logic lives in
``ukg2d365.flows``, output in ``ukg2d365.render``. A command reads top to bottom::

    with command(ctx, "sync-dimensions", {"dry_run": dry_run}, writes=not dry_run, dry_run=dry_run) as run:
        plan = read_and_plan(run.context)      # the first use of run.context records the run in the ledger
        ...
        run.finish(summary_text, ok=result.ok)
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import typer

from ukg2d365 import __version__
from ukg2d365.config import Config, default_config_path, load_config
from ukg2d365.errors import ExitStatus, Ukg2d365Error, UsageError
from ukg2d365.flows.runtime import Context, RecordedRun, recorded_run
from ukg2d365.render import Output

HELP = """Post UKG Pro payroll GL distributions into Dynamics 365 F&O general journals, exactly once.

Data flows one way, UKG -> D365. Try it with no tenant: `ukg2d365 sandbox` (or `make demo`).
Exit codes: 0 ok (also "nothing to do"), 1 some records failed (replay retries them), 2 usage or
configuration error, 3 authentication failed, 4 a remote system stayed unavailable or throttled,
or another run holds the ledger lock.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False)

# Options more than one command shares: one definition, one help text.
RUN_ID = typer.Option(None, "--run-id", help="UKG GL run id")
PAY_GROUP = typer.Option(None, "--pay-group", help="UKG pay group code")
PERIOD_END = typer.Option(None, "--period-end", help="Pay period end date, YYYY-MM-DD")
SYSTEM = typer.Argument(..., help="ukg | d365")
FROM_FILE = typer.Option(None, "--from-file", dir_okay=False, help="Read UKG's GL export file (CSV or fixed width, "
                         "laid out as file_source: in the config says) instead of the UKG API")


def dry_run_option(help: str) -> Any:
    """``--dry-run``; each command says in its own words what a dry run leaves alone."""
    return typer.Option(False, "--dry-run", help=help)


@dataclass
class State:
    config_path: Path
    ledger_path: Path | None
    out: Output
    verbose: bool

    def config(self) -> Config:
        return load_config(self.config_path)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ukg2d365 {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Config file [default: $UKG2D365_CONFIG, else ./ukg2d365.yaml]",
        show_default=False),
    ledger: Path | None = typer.Option(None, "--ledger", help="Ledger file (overrides ledger.path)"),
    json_mode: bool = typer.Option(False, "--json", help="One JSON object per line on stdout (for cron and CI)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More detail; tracebacks for internal errors"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary line and errors"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version"),
) -> None:
    ctx.obj = State(config or default_config_path(), ledger, Output(json_mode=json_mode, quiet=quiet,
                                                                     verbose=verbose), verbose)


def state_of(ctx: typer.Context) -> State:
    state = ctx.obj
    if not isinstance(state, State):  # invoked without the callback (tests calling a command directly)
        state = State(default_config_path(), None, Output(), False)
        ctx.obj = state
    return state


@dataclass
class Run:
    """One invocation: its output, and (when the command is recorded) its run in the ledger.

    ``context``, ``config`` and ``summary`` start the recorded run on first use, so the usage errors a
    command finds before it (a bad date, a missing selection) leave no run behind, as before this package.
    """

    state: State
    name: str | None
    args: dict[str, Any]
    lock: bool
    record_http: bool
    _stack: ExitStack
    code: int = int(ExitStatus.OK)
    _recorded: RecordedRun | None = field(default=None, repr=False)

    @property
    def out(self) -> Output:
        return self.state.out

    @property
    def recorded(self) -> RecordedRun:
        if self._recorded is None:
            if self.name is None:
                raise RuntimeError("this command was opened without a ledger run")
            self._recorded = self._stack.enter_context(recorded_run(
                self.state.config(), self.name, self.args, lock=self.lock, ledger_path=self.state.ledger_path,
                record_http=self.record_http))
        return self._recorded

    @property
    def context(self) -> Context:
        return self.recorded.context

    @property
    def config(self) -> Config:
        return self.recorded.config

    @property
    def summary(self) -> dict[str, Any]:
        return self.recorded.summary

    def finish(self, text: str | None = None, *, ok: bool = True, code: int | None = None, **fields: Any) -> None:
        """Set the exit code (``code``, else 0 when ``ok``, else 1) and print the summary line with ``fields``."""
        self.code = int(code if code is not None else ExitStatus.OK if ok else ExitStatus.RECORDS_FAILED)
        if self._recorded is not None:
            self._recorded.code = self.code
        if text is not None:
            self.out.summary(text, **fields)


def _fail(state: State, exc: BaseException) -> NoReturn:
    if isinstance(exc, Ukg2d365Error):
        code = int(exc.exit_status)
        state.out.error(str(exc), code=code)
    elif isinstance(exc, KeyboardInterrupt):
        state.out.error("interrupted; postings in flight are recovered on the next run", code=130)
        raise typer.Exit(130)
    else:
        code = int(ExitStatus.RECORDS_FAILED)
        state.out.error(f"internal error: {type(exc).__name__}: {exc}" +
                        ("" if state.verbose else " (run with --verbose for the traceback)"), code=code)
        if state.verbose:
            traceback.print_exc()
    raise typer.Exit(code)


@contextmanager
def command(
    ctx: typer.Context,
    name: str | None = None,
    args: dict[str, Any] | None = None,
    *,
    writes: bool = False,
    dry_run: bool = False,
    record_http: bool = True,
) -> Iterator[Run]:
    """Run one command: every error becomes one line and its exit code, and the command exits with ``run.code``.

    With a ``name`` the run is recorded in the ledger (as ``name --dry-run`` for a dry run) and, when it
    ``writes``, holds the run lock; ``record_http=False`` keeps HTTP events out of the posting trails.
    """
    state = state_of(ctx)
    recorded_name = None if name is None else name + (" --dry-run" if dry_run else "")
    try:
        with ExitStack() as stack:
            run = Run(state, recorded_name, dict(args or {}), writes, record_http, stack)
            yield run
            if run._recorded is not None:
                run._recorded.code = run.code
    except typer.Exit:
        raise
    except (Ukg2d365Error, KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - one place maps every error
        _fail(state, exc)
    raise typer.Exit(run.code)


def parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a date", hint="use YYYY-MM-DD") from None
