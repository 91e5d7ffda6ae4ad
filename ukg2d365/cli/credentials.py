"""The ``credentials`` group: store, show (masked) and delete the UKG, D365 and notification secrets.

Each command works on one scope: the config's ``credentials.profile`` (``-c acme.yaml``), ``--profile NAME``, or,
when neither names a profile, the global secrets.
"""

from __future__ import annotations

import sys

import typer

from ukg2d365.cli.app import SYSTEM, Run, app, command
from ukg2d365.credentials import SYSTEMS, CredentialScope, CredentialStore, check_profile, prompt_fields
from ukg2d365.errors import ExitStatus, UsageError
from ukg2d365.render.credentials import credential_status

credentials_app = typer.Typer(help="Store, show (masked) and delete the UKG, D365 and notification secrets, globally "
                                   "or per credential profile (the config's credentials.profile).\n\nExamples:\n\n\b\n"
                                   "  ukg2d365 credentials set d365\n"
                                   "  ukg2d365 -c tenants/acme.yaml credentials set d365   # profile acme's\n"
                                   "  ukg2d365 credentials status",
                              no_args_is_help=True)

PROFILE = typer.Option(None, "--profile", help="Credential profile to work on [default: the config's "
                       "credentials.profile; without one, the global secrets]", show_default=False)


def scope_of(run: Run, profile: str | None) -> CredentialScope:
    """``--profile``, else the config's ``credentials.profile``; the global secrets when no config names one.

    A config that exists but does not load is an error: storing into the wrong scope would go unnoticed.
    """
    path = run.state.config_path
    if profile is not None:
        return CredentialScope(check_profile(profile), None)
    if path is None:
        return CredentialScope()
    return CredentialScope.of(run.state.config())


def _where(store: CredentialStore) -> str:
    scope = store.scope
    return store.backend_description() + ("" if scope.profile is None else f", {scope.describe()}")


@credentials_app.command("set")
def credentials_set(ctx: typer.Context, system: str = SYSTEM, profile: str | None = PROFILE) -> None:
    """Prompt (hidden input) for the secrets of one system and store them encrypted.

    When standard input is not a terminal, the values are read one per line from it, in prompt order.

    Examples:

    \b
      ukg2d365 credentials set d365
      ukg2d365 -c /etc/ukg2d365/tenants/acme.yaml credentials set d365   # its credentials.profile
      printf '%s\\n' "$USER" "$PASS" "$KEY" "" | ukg2d365 credentials set ukg --profile acme
    """
    with command(ctx) as run:
        fields = prompt_fields(system)
        store = CredentialStore(scope=scope_of(run, profile))
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
        store.set(system, values)
        run.finish(f"stored {system} credentials in {_where(store)}")


@credentials_app.command("status")
def credentials_status(ctx: typer.Context, profile: str | None = PROFILE) -> None:
    """Which secrets are present, where they come from (env or store), masked.

    Examples:

    \b
      ukg2d365 credentials status
      ukg2d365 -c /etc/ukg2d365/tenants/acme.yaml credentials status
    """
    with command(ctx) as run:
        optional = {(system, f.field) for system in SYSTEMS for f in prompt_fields(system) if f.optional}
        store = CredentialStore(scope=scope_of(run, profile))
        for unused, read in store.ignored_global_env():
            run.out.warn(f"{unused} is set but not used: {store.scope.describe()} reads {read}")
        missing = credential_status(run.out, store.status(), _where(store), optional,
                                    store.scope.set_command("ukg|d365"))
        run.finish(code=int(ExitStatus.OK if not missing else ExitStatus.USAGE))


@credentials_app.command("delete")
def credentials_delete(ctx: typer.Context, system: str = SYSTEM, profile: str | None = PROFILE) -> None:
    """Delete the stored secrets of one system (environment variables are not touched).

    Examples:

    \b
      ukg2d365 credentials delete ukg
      ukg2d365 credentials delete d365 --profile acme
    """
    with command(ctx) as run:
        store = CredentialStore(scope=scope_of(run, profile))
        removed = store.delete(system)
        run.finish(f"deleted {len(removed)} stored {system} secret(s)"
                   + ("" if store.scope.profile is None else f" of {store.scope.describe()}"))


app.add_typer(credentials_app, name="credentials")
