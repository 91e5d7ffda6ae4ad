"""ping: one row per system checked, and the summary line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ukg2d365.render import Output, Table, styled

if TYPE_CHECKING:  # only the types: rendering never runs a flow
    from ukg2d365.flows.ping import Check


def checks(out: Output, results: Sequence[Check], exit_code: int) -> None:
    table = Table(title="ukg2d365 ping", title_justify="left")
    for column in ("System", "Host", "Result", "Latency", "Detail"):
        table.add_column(column, overflow="fold")
    for c in results:
        out.event("check", system=c.system, host=c.host, ok=c.ok, latency_ms=c.latency_ms, detail=c.detail)
        table.add_row(c.system, c.host, styled("ok", "green") if c.ok else styled("FAILED", "red"),
                      f"{c.latency_ms} ms" if c.latency_ms is not None else "-", c.detail)
    out.table(table)
    failed = [c.system for c in results if not c.ok]
    out.summary("ping: all systems reachable and authenticated" if not failed
                else f"ping: {', '.join(failed)} failed", ok=not failed, exit_code=exit_code)
