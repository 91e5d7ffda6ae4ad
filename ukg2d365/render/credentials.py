"""credentials status: which secrets are present and where they come from, never their values (masked)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from ukg2d365.render import Output, Table, styled

if TYPE_CHECKING:
    from ukg2d365.credentials import FieldStatus


def credential_status(out: Output, rows: Sequence[FieldStatus], backend: str, optional: Collection[tuple[str, str]],
                      set_command: str = "ukg2d365 credentials set ukg|d365") -> int:
    """The table and the summary line (``set_command`` stores what is missing); returns how many are missing."""
    table = Table(title=f"Credentials ({backend})", title_justify="left")
    for column in ("System", "Field", "Source", "Value"):
        table.add_column(column)
    missing = 0
    for s in rows:
        out.event("credential", system=s.system, field=s.field, present=s.present, source=s.source,
                  masked=s.masked)
        table.add_row(s.system, s.field, s.source, s.masked if s.present else styled("missing", "red"))
        missing += 0 if s.present or (s.system, s.field) in optional else 1
    out.table(table)
    out.summary("all required credentials present" if not missing
                else f"{missing} required credential(s) missing: `{set_command}`")
    return missing
