"""sandbox: local UKG Pro, Entra ID and D365 F&O simulators over HTTPS, with a ready config."""

from __future__ import annotations

from pathlib import Path

import typer

from ukg2d365.cli.app import app, command


@app.command()
def sandbox(
    ctx: typer.Context,
    port: int = typer.Option(8443, "--port", help="First port: Entra ID on P, UKG on P+1, D365 on P+2 (0: free ports)"),
    employees: int = typer.Option(600, "--employees", help="Employees in the generated company"),
    companies: int = typer.Option(1, "--companies", min=1, max=2, help="UKG companies: 2 adds C0MP2 (paid by "
                                  "legal entity USPI) and a cost center borne by USPM, with the legal_entities: "
                                  "section for them in the config"),
    latency_ms: int = typer.Option(0, "--latency-ms", help="Latency added to every request"),
    directory: Path = typer.Option(Path("sandbox-run"), "--dir", help="Where the config, CA and ledger go"),
    export_gl: str | None = typer.Option(None, "--export-gl", metavar="RUN_ID",
                                         help="Write this GL run as UKG's GL export file (--to, --gl-format) and exit"),
    to: Path = typer.Option(Path("gl-export.csv"), "--to", help="Where --export-gl writes"),
    gl_format: str = typer.Option("csv", "--gl-format", help="csv (the layout the sandbox config reads) | fixed_width"),
    odata_line_ms: float = typer.Option(0.0, "--odata-line-ms", min=0,
                                        help="Cost model: D365 time per OData journal line (serial in a $batch); "
                                             "a real F&O spends milliseconds (bench: 5)"),
    max_changesets: int = typer.Option(0, "--max-changesets", min=0,
                                       help="Cost model: $batch requests D365 runs at once, 429 past it (0: no limit)"),
    dmf_fixed_ms: float = typer.Option(0.0, "--dmf-fixed-ms", min=0,
                                       help="Cost model: time of every DMF import before its lines (bench: 5000)"),
    dmf_line_us: float = typer.Option(0.0, "--dmf-line-us", min=0,
                                      help="Cost model: set-based DMF import time per line (bench: 20)"),
) -> None:
    """Start local UKG Pro, Entra ID and D365 F&O simulators over HTTPS and write a ready config for them.

    Examples:

    \b
      ukg2d365 sandbox --dir sandbox-run
      ukg2d365 sandbox --port 0 --employees 60 --latency-ms 50
      ukg2d365 sandbox --dir sandbox-le --port 0 --companies 2     # several legal entities
      ukg2d365 sandbox --export-gl GL20261113BW01 --to gl-export.csv
    """
    with command(ctx) as run:
        if export_gl is not None:
            from ukg2d365.sandbox.gl_export import export_for_cli

            return run.out.summary(export_for_cli(export_gl, to, gl_format, employees, companies))
        # Imported here: the simulators (and their TLS set-up) load only for this command.
        from ukg2d365.sandbox import CostModel, serve_forever_cli

        directory.mkdir(parents=True, exist_ok=True)
        cost = CostModel(odata_line_ms=odata_line_ms, max_changesets=max_changesets, dmf_fixed_ms=dmf_fixed_ms,
                         dmf_line_us=dmf_line_us)
        serve_forever_cli(directory, port, employees, latency_ms, companies, cost)
