"""The Typer app, its global options, and ``command()``: the one place a command's errors become exit codes.

Every command module (``payroll``, ``accruals``, ``sync``, ``reconcile``, ``report``, ``ledger``, ``credentials``,
``webhook``, ``sandbox``, ``ping``, ``init``, ``worker``) imports this module and nothing else from ``ukg2d365.cli``;
business logic lives in ``ukg2d365.flows``, output in ``ukg2d365.render``. A command reads top to bottom::

    with command(ctx, "sync-dimensions", {"dry_run": dry_run}, writes=not dry_run, dry_run=dry_run) as run:
        plan = read_and_plan(run.context)      # the first use of run.context records the run in the ledger
        ...
        run.finish(summary_text, ok=result.ok)
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import typer

from ukg2d365 import __version__
from ukg2d365.config import Config, default_config_path, load_config
from ukg2d365.errors import ExitStatus, Ukg2d365Error, UsageError
from ukg2d365.flows.runtime import Context, RecordedRun, internal_error_line, recorded_run
from ukg2d365.notify import RunReport, after_run
from ukg2d365.render import FORMATS, Output

HELP = """Post UKG Pro payroll GL distributions into Dynamics 365 F&O general journals, exactly once.

Data flows one way, UKG -> D365. Try it with no tenant: `ukg2d365 sandbox` (or `make demo`).
Exit codes: 0 ok (also "nothing to do"), 1 some records failed or were refused (replay retries them),
2 usage or configuration error, 3 authentication failed, 4 a remote system stayed unavailable
(down, maintenance page, login redirect, throttled), 70 internal error (a bug), 75 another run holds
the lock (try again later).

Examples:

\b
  ukg2d365 sandbox --dir sandbox-run            # local simulators and a ready config
  ukg2d365 -c sandbox-run/ukg2d365.yaml ping
  ukg2d365 post-payroll --due --dry-run
  ukg2d365 --json post-payroll --due --yes      # cron
  ukg2d365 reconcile --from 2026-11-01 --to 2026-11-30
  ukg2d365 COMMAND -h                           # each command's options and examples
"""

# -h as well as --help on every command (Click hands help_option_names down to subcommands); shell completion
# through --install-completion / --show-completion.
app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})

# Options more than one command shares: one definition, one help text.
RUN_ID = typer.Option(None, "--run-id", help="UKG GL run id")
PAY_GROUP = typer.Option(None, "--pay-group", help="UKG pay group code")
PERIOD_END = typer.Option(None, "--period-end", help="Pay period end date, YYYY-MM-DD")
FROM_FILE = typer.Option(None, "--from-file", dir_okay=False, help="Read UKG's GL export file (CSV or fixed width, "
                         "laid out as file_source: in the config says) instead of the UKG API")
SYSTEM = typer.Argument(..., help="ukg | d365 | notify")
FORMAT = typer.Option("table", "--format", help="table | csv | json: csv and json print only the export on stdout "
                      "(json: one document; the global --json is one event per line)")
YES = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation on a terminal")
SHOW_ALL = typer.Option(False, "--all", help="Show every account of each journal (through a pager on a terminal)")


def dry_run_option(help: str) -> Any:
    """``--dry-run``; each command says in its own words what a dry run leaves alone."""
    return typer.Option(False, "--dry-run", help=help)


@dataclass
class State:
    config_path: Path | None  # None: the search path (load_config names where it looked)
    ledger_path: Path | None
    out: Output
    verbose: bool
    named_config: bool = False  # given with -c: the commands an alert suggests carry it too

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
        None, "--config", "-c", help="Config file [default: $UKG2D365_CONFIG, else the first of ./ukg2d365.yaml, "
        "~/.config/ukg2d365/config.yaml, /etc/ukg2d365/ukg2d365.yaml]", show_default=False),
    ledger: Path | None = typer.Option(None, "--ledger", help="Ledger file (overrides ledger.path)"),
    json_mode: bool = typer.Option(False, "--json", help="One JSON object per line on stdout (for cron and CI)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More detail; tracebacks for internal errors"),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="Nothing on success; warnings, errors and the summary line otherwise (cron)"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version"),
) -> None:
    ctx.obj = State(config or default_config_path(), ledger, Output(json_mode=json_mode, quiet=quiet,
                                                                     verbose=verbose), verbose, config is not None)


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
        if text is None:
            return
        if self.out.quiet and not self.out.json_mode and self.code == ExitStatus.OK and not self.out.warnings:
            self.out.summary_text = text  # --quiet: silence on success, so cron mails only trouble
            return
        self.out.summary(text, **fields)


def _fail(state: State, exc: BaseException, traceback_key: str | None = None) -> int:
    """Print the one line an error gets; returns its exit code."""
    if isinstance(exc, Ukg2d365Error):
        code = int(exc.exit_status)
        state.out.error(str(exc), code=code)
    elif isinstance(exc, KeyboardInterrupt):
        code = 130
        state.out.error("interrupted; postings in flight are recovered on the next run", code=code)
    else:
        code = int(ExitStatus.INTERNAL)
        where = (f"the traceback is in `ukg2d365 audit {traceback_key}`" if traceback_key
                 else "run with --verbose for the traceback")
        state.out.error(f"internal error (this is a bug): {internal_error_line(exc)}; {where}", code=code)
        if state.verbose:
            traceback.print_exception(exc)
    return code


def _notify(state: State, command_line: str, code: int) -> None:
    """What the run told its operator goes to notify.after_run (alert or heartbeat); a delivery problem is a warning."""
    out = state.out
    report = RunReport(command_line, code, error=out.errors[-1] if out.errors else None, warnings=list(out.warnings),
                       summary=out.summary_text, config_path=state.config_path if state.named_config else None)
    for problem in after_run(report, state.config_path):
        out.warn(problem)


@contextmanager
def command(
    ctx: typer.Context,
    name: str | None = None,
    args: dict[str, Any] | None = None,
    *,
    writes: bool = False,
    dry_run: bool = False,
    record_http: bool = True,
    fmt: str = "table",
    formats: tuple[str, ...] = FORMATS,
    destination: Path | None = None,
) -> Iterator[Run]:
    """Run one command: every error becomes one line and its exit code, and the command exits with ``run.code``.

    With a ``name`` the run is recorded in the ledger (as ``name --dry-run`` for a dry run) and, when it
    ``writes``, holds the run lock; ``record_http=False`` keeps HTTP events out of the posting trails. ``fmt``
    is the command's ``--format``: its export is written only when the command ends without an error.
    """
    state = state_of(ctx)
    recorded_name = None if name is None else name + (" --dry-run" if dry_run else "")
    run: Run | None = None
    try:
        with ExitStack() as stack:
            state.out.use_format(fmt, formats, destination)
            run = Run(state, recorded_name, dict(args or {}), writes, record_http, stack)
            yield run
            if run._recorded is not None:
                run._recorded.code = run.code
        code = run.code
        state.out.close()
    except typer.Exit:
        raise
    except (Ukg2d365Error, KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - one place maps every error
        code = _fail(state, exc, run._recorded.traceback_key if run is not None and run._recorded is not None else None)
    if name is not None and not dry_run and code != 130:
        _notify(state, _command_line(name, args or {}), code)
    raise typer.Exit(code)


def _command_line(name: str, args: dict[str, Any]) -> str:
    """``post-payroll --due`` for an alert's title: the command and the options that were given."""
    parts = [name]
    for key, value in args.items():
        option = "--" + key.replace("_", "-")
        if value is True:
            parts.append(option)
        elif value not in (None, False, [], ()):
            parts.append(f"{option} {' '.join(map(str, value)) if isinstance(value, list) else value}")
    return " ".join(parts)


def parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a date", hint="use YYYY-MM-DD") from None


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def interactive(state: State) -> bool:
    """Someone can answer a question: stdin is a terminal and the output is not the --json event stream."""
    return stdin_is_terminal() and not state.out.json_mode


def confirmed(run: Run, question: str, *, yes: bool) -> bool:
    """Ask on a terminal (on stderr, so `> file` never hides the question); never asks with --yes or no terminal."""
    if yes or not interactive(run.state):
        return True
    return typer.confirm(question, default=False, err=True)
