"""The ``credentials`` group: store, show (masked) and delete the UKG and D365 secrets."""

from __future__ import annotations

import sys

import typer

from ukg2d365.cli.app import SYSTEM, app, command
from ukg2d365.credentials import SYSTEMS, CredentialStore, prompt_fields
from ukg2d365.errors import ExitStatus, UsageError
from ukg2d365.render.credentials import credential_status

credentials_app = typer.Typer(help="Store, show (masked) and delete the UKG and D365 secrets.\n\nExamples:\n\n\b\n"
                                   "  ukg2d365 credentials set d365\n  ukg2d365 credentials status",
                              no_args_is_help=True)


@credentials_app.command("set")
def credentials_set(ctx: typer.Context, system: str = SYSTEM) -> None:
    """Prompt (hidden input) for the secrets of one system and store them encrypted.

    When standard input is not a terminal, the values are read one per line from it, in prompt order.

    Examples:

    \b
      ukg2d365 credentials set d365
      printf '%s\\n' "$USER" "$PASS" "$KEY" "" | ukg2d365 credentials set ukg
    """
    with command(ctx) as run:
        fields = prompt_fields(system)
        values: dict[str, str | None] = {}
        interactive = sys.stdin.isatty()
        for f in fields:
            if interactive:
                value = typer.prompt(f.label + (" (Enter to skip)" if f.optional else ""), hide_input=f.secret,
                                     default="" if f.optional else None, show_default=False, err=True)
            else:
                value = sys.stdin.readline().rstrip("\r\n")
            if not value and not f.optional:
                raise UsageError(f"{f.label} is required")
            values[f.field] = value or None
        store = CredentialStore()
        store.set(system, values)
        run.finish(f"stored {system} credentials in {store.backend_description()}")


@credentials_app.command("status")
def credentials_status(ctx: typer.Context) -> None:
    """Which secrets are present, where they come from (env or store), masked.

    Examples:

    \b
      ukg2d365 credentials status
    """
    with command(ctx) as run:
        optional = {(system, f.field) for system in SYSTEMS for f in prompt_fields(system) if f.optional}
        store = CredentialStore()
        missing = credential_status(run.out, store.status(), store.backend_description(), optional)
        run.finish(code=int(ExitStatus.OK if not missing else ExitStatus.USAGE))


@credentials_app.command("delete")
def credentials_delete(ctx: typer.Context, system: str = SYSTEM) -> None:
    """Delete the stored secrets of one system (environment variables are not touched).

    Examples:

    \b
      ukg2d365 credentials delete ukg
    """
    with command(ctx) as run:
        removed = CredentialStore().delete(system)
        run.finish(f"deleted {len(removed)} stored {system} secret(s)")


app.add_typer(credentials_app, name="credentials")
