"""Terminal and machine output: tables for people, CSV or one JSON document for export, JSON lines for cron.

Three ways out, chosen per run:

* **table** (default): lines and rich tables on stdout for people; warnings and errors on stderr.
* **csv / json** (``--format``): the command hands its records to :meth:`Output.export` as :class:`Rows`
  (one mechanism for every command); stdout then carries only the export (CSV with a header row, or one JSON
  document on one line), written when the command ends without an error, so a failed run never leaves half a
  file. Records a command cannot hold (a journal's lines) are made as they are written (:meth:`Rows.add_later`),
  and the export is written as they come. What people would read goes to stderr instead. ``--json --format
  json`` is the document.
* **--json** (global): one JSON object per line on stdout, each with its time (``at``); warnings and errors
  as JSON log lines on stderr, each once.

Progress bars go to stderr and only when stderr is a terminal. ``--quiet`` silences everything but warnings,
errors and the export a command was asked for. Rendering reads results; it never calls a flow.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table as RichTable
from rich.text import Text

from ukg2d365.errors import UsageError

PREVIEW_ROWS = 40
FORMATS = ("table", "csv", "json")
# When stdout or stderr is not a terminal (a pipe, a file, cron) lines are not wrapped at 80 columns: a line
# cut in two breaks grep and log shippers. COLUMNS still wins when it is set.
UNWRAPPED_WIDTH = 10_000


class Sink(Protocol):
    """Where an export is written: stdout (:class:`Stdout`) or the file it replaces."""

    def write(self, text: str, /) -> int: ...


class Stdout:
    """``sys.stdout`` as it is at each write, except that a reader who leaves early (``| head``, a closed
    pipe) ends the output, not the run: what the command does (a posting under way, its ledger records, its
    exit code and alert) is the same as with ``> /dev/null``. Without this a closed pipe surfaced as an internal
    error (exit 70) in the middle of a run."""

    left = False  # the reader has gone: everything after is dropped

    def write(self, text: str) -> int:
        if not Stdout.left:
            try:
                return sys.stdout.write(text)
            except BrokenPipeError:
                self._reader_left()
        return len(text)

    def flush(self) -> None:
        if not Stdout.left:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                self._reader_left()

    def isatty(self) -> bool:
        return not Stdout.left and sys.stdout.isatty()

    def fileno(self) -> int:
        return sys.stdout.fileno()

    @property
    def encoding(self) -> str:
        return getattr(sys.stdout, "encoding", None) or "utf-8"

    @staticmethod
    def _reader_left() -> None:
        Stdout.left = True
        # Python flushes stdout again at exit: point the descriptor at /dev/null so that flush is silent too
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass  # a stdout without a descriptor (a test runner's): nothing is flushed to it at exit
        finally:
            os.close(devnull)


STDOUT = Stdout()


class Table(RichTable):
    """A rich table whose plain-text cells are shown verbatim: codes from UKG may look like markup ('[/x]')."""

    def __init__(self, *headers: Any, title: str | Text | None = None, **kwargs: Any) -> None:
        super().__init__(*headers, title=Text(title) if isinstance(title, str) else title, **kwargs)

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(escape(r) if isinstance(r, str) else r for r in renderables), **kwargs)


def styled(text: str, style: str) -> Text:
    """A cell or line fragment in a style, its text never read as markup."""
    return Text(text, style=style)


def jsonable(value: Any) -> Any:
    """Decimals as exact strings, dates as ISO text, containers recursively: what every JSON output writes."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def entity(code: str | None) -> str | None:
    """A legal entity (dataAreaId) as D365 shows it, upper case, wherever ukg2d365 prints or exports one: the config
    may spell it ``usmf``; D365 matches it without case."""
    return code.upper() if code else code


def money(amount: Decimal | None) -> str:
    """An amount for people: thousands separators, every digit kept (never rounded for display)."""
    return "" if amount is None else f"{amount:,}"


# ---------------------------------------------------------------------- rows: what every command exports


@dataclass(frozen=True)
class Column:
    """One column of exported records: its CSV header and JSON key, its title for people, and its kind."""

    key: str
    title: str
    kind: Literal["text", "money", "count"] = "text"

    @property
    def justify(self) -> Literal["left", "right"]:
        return "left" if self.kind == "text" else "right"


class Rows:
    """Records of one kind, the same in every format: a table for people, CSV with a header row, or JSON.

    Amounts are Decimals: people see them with thousands separators, CSV and JSON as plain decimals
    ("1234.50"). ``None`` is an empty cell (CSV) or null (JSON).
    """

    def __init__(self, name: str, title: str, columns: Sequence[Column]) -> None:
        self.name = name
        self.title = title
        self.columns = tuple(columns)
        self._keys = {c.key for c in self.columns}
        self.records: list[dict[str, Any]] = []
        self._later: list[Callable[[], Iterable[dict[str, Any]]]] = []

    def add(self, **values: Any) -> None:
        self._check(values)
        self.records.append(values)

    def add_later(self, records: Callable[[], Iterable[dict[str, Any]]]) -> None:
        """Records made only while the export is written, one at a time, after those added: a journal's lines,
        read again from its plan then, are never all in memory as records. They are exported, not tabled."""
        self._later.append(records)

    def _check(self, values: dict[str, Any]) -> None:
        unknown = set(values) - self._keys
        if unknown:
            raise ValueError(f"{self.name}: no column {', '.join(sorted(unknown))}")

    def __len__(self) -> int:
        """The records held (those added later are made only as the export is written)."""
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every record in order: those added, then those made later."""
        yield from self.records
        for records in self._later:
            for values in records():
                self._check(values)
                yield values

    def table(self, *, limit: int | None = None, more: str = "", only: Sequence[str] | None = None) -> Table:
        """A rich table for people: at most ``limit`` rows, then one row saying how many more (and ``more``);
        ``only`` the columns of those keys (a narrow terminal: the export keeps every column)."""
        shown = self.records if limit is None else self.records[:limit]
        columns = self.columns if only is None else tuple(c for c in self.columns if c.key in only)
        table = Table(title=self.title, title_justify="left")
        for column in columns:
            # text folds; an amount or a count is never cut in two (a reader would take half of it)
            table.add_column(column.title, justify=column.justify, overflow="fold", no_wrap=column.kind != "text")
        for record in shown:
            table.add_row(*(self._cell(column, record.get(column.key)) for column in columns))
        if len(shown) < len(self.records):
            table.add_row(f"... {len(self.records) - len(shown)} more" + (f" ({more})" if more else ""),
                          *([""] * (len(columns) - 1)))
        return table

    @staticmethod
    def _cell(column: Column, value: Any) -> Any:
        if value is None:
            return ""
        if column.kind == "money":
            return money(value)
        if isinstance(value, (list, tuple)):
            return ", ".join(str(v) for v in value)
        if isinstance(value, dict):
            return _csv_cell(value)
        return value if isinstance(value, Text) else str(value)

    def write_csv(self, stream: Sink) -> None:
        """A header row, then a row per record, written as each record is made."""
        writer = csv.writer(stream, lineterminator="\n")
        keys = [c.key for c in self.columns]
        writer.writerow(keys)
        for record in self:
            writer.writerow([_csv_cell(record.get(key)) for key in keys])

    def json_items(self) -> Iterator[dict[str, Any]]:
        """Each record as JSON values, in column order, as it is made."""
        keys = [c.key for c in self.columns]
        for record in self:
            yield {key: jsonable(_plain(record.get(key))) for key in keys}

    def json_records(self) -> list[dict[str, Any]]:
        return list(self.json_items())


def write_json(stream: Sink, document: dict[str, Any], name: str | None = None,
               items: Iterable[Any] = ()) -> None:
    """``json.dumps(jsonable({**document, name: [*items]})) + "\n"`` to the byte, written as the items come: one
    document on one line without holding the list (or its text) in memory."""
    parts = [f"{json.dumps(key)}: {json.dumps(jsonable(value))}" for key, value in document.items()]
    if name is None:
        stream.write("{" + ", ".join(parts) + "}\n")
        return
    stream.write("{" + "".join(part + ", " for part in parts) + json.dumps(name) + ": [")
    chunk: list[str] = []
    separator = ""
    for item in items:
        chunk.append(json.dumps(item))
        if len(chunk) == 1024:  # a thousand items a write: neither one write per item nor all of them at once
            stream.write(separator + ", ".join(chunk))
            separator = ", "
            chunk.clear()
    stream.write((separator + ", ".join(chunk) if chunk else "") + "]}\n")


def _plain(value: Any) -> Any:
    return value.plain if isinstance(value, Text) else value


def _flat(value: Any) -> str:
    """A value inside one cell: text as is, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(jsonable(value), separators=(",", ":"))


def _csv_cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, dict):
        return "; ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    wide = None if stream.isatty() or os.environ.get("COLUMNS") else UNWRAPPED_WIDTH
    if stderr:
        return Console(stderr=True, highlight=False, soft_wrap=wide is not None, width=wide)
    return Console(file=STDOUT, highlight=False, soft_wrap=wide is not None, width=wide)  # type: ignore[arg-type]


class Output:
    def __init__(self, *, json_mode: bool = False, quiet: bool = False, verbose: bool = False) -> None:
        self.json_mode = json_mode
        self.json_logs = json_mode  # warnings and errors as JSON log lines on stderr
        self.quiet = quiet
        self.verbose = verbose
        self.fmt = "table"
        self.destination: Path | None = None  # the export goes to this file instead of stdout
        self.out = _console()
        self.err = _console(stderr=True)
        self._export: Rows | None = None
        self._text: str | None = None
        self._document: dict[str, Any] = {}
        # What this run told its operator, kept for the alert (ukg2d365.notify) that repeats it.
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self.summary_text: str | None = None

    # ------------------------------------------------------------------ format

    def use_format(self, fmt: str, formats: Sequence[str] = FORMATS, destination: Path | None = None) -> None:
        """``--format``: table (people), or an export (csv, json, a command's own such as html) on stdout or into
        ``destination``. The global --json stays JSON lines on stdout, so its export needs a destination."""
        if fmt not in formats:
            raise UsageError(f"--format {fmt!r}: use {', '.join(formats[:-1])} or {formats[-1]}")
        self.destination = destination
        if self.json_mode and fmt == "json" and destination is None:
            self.json_mode = False  # the document (on one line) replaces the event stream; logs stay JSON
        elif self.json_mode and fmt != "table" and destination is None:
            raise UsageError(f"--json and --format {fmt} both ask for stdout",
                             hint=f"--json is one JSON event per line: write the {fmt} to a file (--output), or "
                                  "drop --json")
        self.fmt = fmt

    @property
    def exporting(self) -> bool:
        """stdout carries a CSV, JSON or HTML export: everything for people goes to stderr."""
        return self.fmt != "table" and not self.json_mode and self.destination is None

    @property
    def people(self) -> Console | None:
        """Where lines for people go (None: nowhere, --json or --quiet)."""
        if self.json_mode or self.quiet:
            return None
        return self.err if self.exporting else self.out

    @property
    def wants_export(self) -> bool:
        """An export will be written (--format csv|json): a command builds its records only then, since a
        journal's lines as records would hold the whole journal in memory."""
        return not (self.fmt == "table" or (self.json_mode and self.destination is None))

    def export(self, rows: Rows, **facts: Any) -> None:
        """The command's records (and, for JSON, facts about the whole run): written by :meth:`close`."""
        if self._export is not None and self._export is not rows:
            raise RuntimeError(f"one export per command: {self._export.name} and {rows.name}")
        self._export = rows
        self._document.update(facts)

    def export_text(self, text: str) -> None:
        """A command's whole export as text (a report's HTML page), written by :meth:`close`."""
        self._text = text

    def fact(self, **facts: Any) -> None:
        """Facts for the JSON document of an export (the CSV carries only rows)."""
        self._document.update(facts)

    def close(self) -> None:
        """Write the export of a command that ended without an error (CSV with a header row, one JSON document,
        or the command's text) to stdout, or into the destination file, replaced whole; written as its records
        are made, never held whole as records or as text."""
        if not self.wants_export:
            return
        rows, text, document = self._export, self._text, self._document
        self._export, self._text, self._document = None, None, {}
        if text is None and rows is None and self.fmt == "csv":
            return
        if self.destination is None:
            self._write(STDOUT, rows, text, document)
            STDOUT.flush()
            return
        part = self.destination.with_name(f".{self.destination.name}.part")
        with part.open("w", encoding="utf-8") as stream:
            self._write(stream, rows, text, document)
        os.replace(part, self.destination)  # readers never see half a file

    def _write(self, stream: Sink, rows: Rows | None, text: str | None, document: dict[str, Any]) -> None:
        if text is not None:
            stream.write(text)
        elif self.fmt == "csv":
            assert rows is not None
            rows.write_csv(stream)
        elif rows is not None and rows.name not in document:  # a fact of that name (nested records) wins
            write_json(stream, document, rows.name, rows.json_items())  # one document, on one line
        else:
            write_json(stream, document)

    # ------------------------------------------------------------------ primitives

    def event(self, name: str, **fields: Any) -> None:
        """One JSON object per line on stdout, with its time (only in --json mode)."""
        if self.json_mode:
            stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            STDOUT.write(json.dumps({"event": name, "at": stamp, **jsonable(fields)}) + "\n")
            STDOUT.flush()

    def say(self, text: str, *, style: str | None = None, lead: tuple[str, str] | None = None) -> None:
        """A line for people; ``lead`` is a styled first word ("posted", "green"). Never read as markup."""
        console = self.people
        if console is not None:
            line = Text.assemble(lead, " ", text) if lead else Text(text)
            console.print(line, style=style or "")

    def summary(self, text: str, **fields: Any) -> None:
        """The last line of a run: an event with --json, else a line (on stderr while exporting). With --quiet,
        ``Run.finish`` leaves it out on a clean success, so cron mails only trouble."""
        self.summary_text = text
        if self.json_mode:
            self.event("summary", message=text, **fields)
            return
        self._document["summary"] = {"message": text, **fields}
        (self.err if self.exporting else self.out).print(Text(text))

    def table(self, table: RenderableType) -> None:
        """A table for people; while exporting, only when stderr is a terminal (someone is watching)."""
        console = self.people
        if console is not None and (not self.exporting or console.is_terminal):
            console.print(table)

    def log(self, level: str, message: str, **fields: Any) -> None:
        """--json mode: log lines on stderr are JSON too, so a log shipper can parse cron output."""
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        sys.stderr.write(json.dumps({"at": stamp, "level": level, "message": message, **fields}) + "\n")
        sys.stderr.flush()

    def error(self, message: str, *, code: int) -> None:
        """The error that ends a run: once, on stderr (a JSON log line with --json)."""
        self.errors.append(message)
        if self.json_logs:
            self.log("error", message, exit_code=code)
        else:
            self.err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.json_logs:
            self.log("warning", message)
        else:
            self.err.print(Text.assemble(("warning:", "yellow"), " ", message))

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

    @contextmanager
    def paged(self, enabled: bool) -> Iterator[None]:
        """Everything printed inside goes through the pager ($PAGER, else less) when asked and on a terminal."""
        console = self.people
        if not enabled or console is None or self.exporting or not console.is_terminal:
            yield
            return
        os.environ.setdefault("LESS", "-FRX")  # quit when it fits, keep colours, leave the screen as it was
        with console.pager(styles=True):
            yield


def table(title: str, columns: tuple[str, ...]) -> Table:
    """A left-titled table whose columns fold long cells rather than cut them."""
    result = Table(title=title, title_justify="left")
    for column in columns:
        result.add_column(column, overflow="fold")
    return result
