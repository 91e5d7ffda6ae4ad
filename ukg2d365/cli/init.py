"""init: write a commented starting config to edit (the config.example.yaml shipped in the package)."""

from __future__ import annotations

from pathlib import Path

import typer

from ukg2d365.cli.app import app, command
from ukg2d365.config import USER_CONFIG, write_example_config


@app.command()
def init(
    ctx: typer.Context,
    path: Path | None = typer.Option(None, "--path", help=f"Where to write it [default: {USER_CONFIG}]",
                                     show_default=False),
    force: bool = typer.Option(False, "--force", help="Replace an existing file"),
) -> None:
    """Write a commented config to edit (mode 0600); refuses to replace an existing file without --force.

    Examples:

    \b
      ukg2d365 init
      ukg2d365 init --path /etc/ukg2d365/ukg2d365.yaml
    """
    with command(ctx) as run:
        written = write_example_config(path or Path(USER_CONFIG), force=force)
        run.finish(f"wrote {written}: fill in the ukg, d365 and mapping sections, then run "
                   f"`ukg2d365 -c {written} ping`")
