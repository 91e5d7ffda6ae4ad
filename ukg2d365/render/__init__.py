"""Terminal and machine output: rich tables for people, one JSON object per line for cron and CI.

Results go to stdout; progress bars go to stderr and only when stderr is a terminal, so cron logs
stay clean. This package holds ``Output`` and the table primitives; one module per command family
(``payroll``, ``sync``, ``reconcile``, ``ledger``, ``ping``, ``credentials``) turns a flow's plan or
result into lines, tables and JSON events. Rendering reads results; it never calls a flow.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table as RichTable
from rich.text import Text

PREVIEW_ROWS = 40


class Table(RichTable):
    """A rich table whose plain-text cells are shown verbatim: codes from UKG may look like markup ('[/x]')."""

    def __init__(self, *headers: Any, title: str | Text | None = None, **kwargs: Any) -> None:
        super().__init__(*headers, title=Text(title) if isinstance(title, str) else title, **kwargs)

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(escape(r) if isinstance(r, str) else r for r in renderables), **kwargs)


def styled(text: str, style: str) -> Text:
    """A cell or line fragment in a style, its text never read as markup."""
    return Text(text, style=style)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class Output:
    def __init__(self, *, json_mode: bool = False, quiet: bool = False, verbose: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.verbose = verbose
        self.out = Console(highlight=False, soft_wrap=False)
        self.err = Console(stderr=True, highlight=False)
        # What this run told its operator, kept for the alert (ukg2d365.notify) that repeats it.
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self.summary_text: str | None = None

    # ------------------------------------------------------------------ primitives

    def event(self, name: str, **fields: Any) -> None:
        """One JSON object per line on stdout (only in --json mode)."""
        if self.json_mode:
            sys.stdout.write(json.dumps({"event": name, **_jsonable(fields)}, sort_keys=False) + "\n")
            sys.stdout.flush()

    def say(self, text: str, *, style: str | None = None, lead: tuple[str, str] | None = None) -> None:
        """A line for people; ``lead`` is a styled first word ("posted", "green"). Never read as markup."""
        if not self.json_mode and not self.quiet:
            line = Text.assemble(lead, " ", text) if lead else Text(text)
            self.out.print(line, style=style or "")

    def summary(self, text: str, **fields: Any) -> None:
        """The one line a cron log always gets, even with --quiet."""
        self.summary_text = text
        if self.json_mode:
            self.event("summary", message=text, **fields)
        else:
            self.out.print(Text(text))

    def table(self, table: Table) -> None:
        if not self.json_mode and not self.quiet:
            self.out.print(table)

    def log(self, level: str, message: str) -> None:
        """--json mode: log lines on stderr are JSON too, so a log shipper can parse cron output."""
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        sys.stderr.write(json.dumps({"at": stamp, "level": level, "message": message}) + "\n")
        sys.stderr.flush()

    def error(self, message: str, *, code: int) -> None:
        self.errors.append(message)
        if self.json_mode:
            self.event("error", message=message, exit_code=code)
            self.log("error", message)
        else:
            self.err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.json_mode:
            self.log("warning", message)
        else:
            self.err.print(Text.assemble(("warning:", "yellow"), " ", message), soft_wrap=True)

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Any]:
        """A progress bar on stderr when it is a terminal; otherwise a no-op callable."""
        if self.json_mode or self.quiet or not self.err.is_terminal or total <= 0:
            yield lambda n: None
            return
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       console=self.err, transient=True)
        with bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)


def table(title: str, columns: tuple[str, ...]) -> Table:
    """A left-titled table whose columns fold long cells rather than cut them."""
    result = Table(title=title, title_justify="left")
    for column in columns:
        result.add_column(column, overflow="fold")
    return result
