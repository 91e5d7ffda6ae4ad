"""Journal planning: UKG GL lines -> one balanced D365 general journal per pay run. Pure; no I/O.

A ``JournalBuilder`` is fed the GL lines of one pay run as they stream in and keeps only what the
journal needs (sums per account + dimensions when summarizing), so memory does not grow with the
number of UKG lines when summarizing.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import heapq
import itertools
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import IO, ClassVar

from ukg2d365.config import Config
from ukg2d365.errors import DataError
from ukg2d365.intercompany import BalancingLine, EntityRouting, balancing_lines, transfers
from ukg2d365.mapping import LedgerAccount, Mapper, MappingError
from ukg2d365.money import quantum
from ukg2d365.ukg.records import GlDistribution

MARKER_PREFIX = "U2D-"
DESCRIPTION_MAX = 60  # LedgerJournalTable.Name is 60 characters
LINE_TEXT_MAX = 60


@dataclass(frozen=True)
class PlannedLine:
    """One line of a planned journal, as the ledger stores it before anything is sent."""

    line_number: int
    account: str
    debit: Decimal
    credit: Decimal
    text: str
    # The UKG account the line books (accrue-payroll picks the accrued ones); not stored, not sent.
    source_account: str = field(default="", compare=False)


@dataclass(frozen=True, order=True)
class PostingKey:
    """The identity of a pay run's posting: company, pay group, period end, UKG run id.

    GL v2 distributions carry no employee number (ukg-api's GL line has none), so a posting is per pay run.
    """

    company: str
    pay_group: str
    period_end: date
    run_id: str
    # The legal entity bearing part of the run when it is not the paying one ("" for the paying entity's
    # journal): its key and marker get "/@ENTITY", while the paying entity's journal keeps the key and marker of
    # a single-entity run, so turning legal_entities on never reposts a run D365 already holds.
    entity: str = ""

    kind: ClassVar[str] = "pay_run"  # the ledger's postings.kind

    @property
    def text(self) -> str:
        base = "/".join([self.company, self.pay_group, self.period_end.isoformat(), self.run_id])
        return f"{base}/@{self.entity}" if self.entity else base

    @property
    def heading(self) -> str:
        """The journal Description before its marker."""
        head = f"Payroll {self.pay_group} {self.period_end.isoformat()} {self.run_id}"
        return f"{head} @{self.entity}" if self.entity else head

    @property
    def reconcile_options(self) -> str:
        """The reconcile options that select this posting."""
        return f"--run-id {self.run_id}"

    @property
    def marker(self) -> str:
        """Short, stable tag written into the journal's Description so D365 can be searched by it."""
        digest = hashlib.sha256(self.text.encode()).digest()
        return MARKER_PREFIX + base64.b32encode(digest).decode()[:12]

    @classmethod
    def of(cls, line: GlDistribution) -> PostingKey:
        return cls(*cls.fields_of(line))

    @staticmethod
    def fields_of_key(key: PostingKey) -> tuple[str, str, date, str]:
        return key.company, key.pay_group, key.period_end, key.run_id

    @staticmethod
    def fields_of(line: GlDistribution) -> tuple[str, str, date, str]:
        """The key's fields as a plain tuple: cheap to hash once per line, before any PostingKey exists."""
        return line.company, line.pay_group, line.period_end, line.run_id


@dataclass(frozen=True, order=True)
class AccrualKey(PostingKey):
    """The identity of a month-end accrual: ``accrual/<pay group>/<legal entity>/<month-end>``.

    Its ``period_end`` is the month-end and ``entity`` the legal entity the journal is in; ``company`` and
    ``run_id`` are empty. Which UKG run the amounts came from is no part of it: a month-end is accrued once
    per pay group and entity, whether from the straddling period's run or, before UKG has that, from an
    estimate. The text starts with ``accrual/`` and puts the date last, so it never equals a pay run's
    key (``company/pay group/date/run``) and neither does its marker.
    """

    kind: ClassVar[str] = "accrual"

    @classmethod
    def for_month(cls, pay_group: str, legal_entity: str, month_end: date) -> AccrualKey:
        return cls("", pay_group, month_end, "", legal_entity.upper())

    @property
    def month_end(self) -> date:
        return self.period_end

    @property
    def text(self) -> str:
        return f"accrual/{self.pay_group}/{self.entity}/{self.period_end.isoformat()}"

    @property
    def heading(self) -> str:
        return f"Accrual {self.pay_group} {self.period_end.isoformat()} @{self.entity}"

    @property
    def reconcile_options(self) -> str:
        return f"--pay-group {self.pay_group} --period-end {self.period_end.isoformat()}"


TextRow = tuple[int, str, str, str, str]  # a planned line as stored: number, account, debit, credit, text

# Payroll repeats amounts: each spelling is parsed once, not once a line (Decimals are immutable, so shared).
_amount_of_text = functools.lru_cache(maxsize=65536)(Decimal)


def planned_lines(rows: Iterable[TextRow]) -> Iterator[PlannedLine]:
    """Stored rows (the spill file's, the ledger's) as PlannedLines, the amounts parsed from their exact text."""
    amount = _amount_of_text
    for number, account, debit, credit, text in rows:
        yield PlannedLine(number, account, amount(debit), amount(credit), text)


# A planned line as a record of text: account, debit, credit, line text and UKG account, each ended by the ASCII
# unit separator but the last, the record by the record separator; its number is its place in the plan. The spill
# file of PlannedLines holds these records, and the ledger stores them as they are, a block of whole records a row.
FIELD, RECORD = "\x1f", "\x1e"
BLOCK_CHARS = 1 << 19  # about 4,000 lines a block: a row of the ledger, what one read of a stored plan holds


def line_record(line: PlannedLine) -> str:
    return f"{line.account}{FIELD}{line.debit!s}{FIELD}{line.credit!s}{FIELD}{line.text}{FIELD}{line.source_account}" \
           f"{RECORD}"


def record_blocks(lines: Iterable[PlannedLine], size: int | None = None) -> Iterator[tuple[int, str]]:
    """(number of lines, records) in blocks of about ``size`` characters (BLOCK_CHARS), of lines numbered 1, 2, 3..."""
    size = size or BLOCK_CHARS
    if isinstance(lines, PlannedLines):
        yield from lines.blocks(size)
        return
    pending: list[str] = []
    chars = 0
    for number, line in enumerate(lines, start=1):
        if line.line_number != number:
            raise ValueError(f"line {line.line_number} planned after line {number - 1}")
        record = line_record(line)
        pending.append(record)
        chars += len(record)
        if chars >= size:
            yield _checked(len(pending), "".join(pending))
            pending, chars = [], 0
    if pending:
        yield _checked(len(pending), "".join(pending))


def block_rows(records: str, first: int) -> list[TextRow]:
    """A block of records as rows (number, account, debit, credit, text), numbered from ``first``."""
    rows: list[TextRow] = []
    add = rows.append
    for number, record in enumerate(records.split(RECORD), start=first):
        if record:
            account, debit, credit, text, _source = record.split(FIELD)
            add((number, account, debit, credit, text))
    return rows


def _checked(count: int, records: str) -> tuple[int, str]:
    """A block whose separators are all where the format puts them: an account or a text holding one would be
    read back as other lines than were planned."""
    if records.count(RECORD) != count or records.count(FIELD) != 4 * count:
        raise DataError("a planned line's account or text holds an ASCII unit or record separator (0x1F, 0x1E); "
                        "check the mapping and payroll.line_text for control characters")
    return count, records


class PlannedLines:
    """A journal's planned lines in plan order: in memory while few, spilled to a temporary file past
    ``SPILL_AT`` so a journal of a million lines costs disk, not memory (``journal.lines`` iterates them again
    from the file each time). Sized, iterable and append-only, like the list it replaces."""

    SPILL_AT = 5000
    _FIELD, _RECORD = FIELD, RECORD  # records as line_record writes them

    def __init__(self, lines: Iterable[PlannedLine] = ()) -> None:
        self._memory: list[PlannedLine] = []
        self._file: IO[str] | None = None
        self._pending: list[str] = []
        self._count = 0
        self._digest = hashlib.sha256()
        self._texts: dict[str, None] = {}  # the distinct line texts, in plan order (a few per UKG account)
        for line in lines:
            self.append(line)

    def append(self, line: PlannedLine) -> None:
        """Add the next line; its number must be the next one (``len(self) + 1``)."""
        if line.line_number != self._count + 1:
            raise ValueError(f"line {line.line_number} planned after line {self._count}")
        self.add(line.account, line.debit, line.credit, line.text, line.source_account)

    def add(self, account: str, debit: Decimal, credit: Decimal, text: str, source_account: str = "",
            amounts: tuple[str, str] | None = None) -> None:
        """Add the next line, numbered ``len(self) + 1``; past ``SPILL_AT`` no PlannedLine is built for it.
        ``amounts``: str() of debit and credit when the caller has them already."""
        self._count += 1
        if text not in self._texts:
            self._texts[text] = None
        f = self._FIELD
        # !s: str() of a Decimal is five times cheaper than the format() an f-string calls by default
        debit_text, credit_text = amounts or (str(debit), str(credit))
        self._pending.append(f"{account}{f}{debit_text}{f}{credit_text}{f}{text}{f}{source_account}{self._RECORD}")
        if self._file is None:
            self._memory.append(PlannedLine(self._count, account, debit, credit, text, source_account))
            if len(self._memory) >= self.SPILL_AT:
                self._file = tempfile.TemporaryFile("w+", encoding="utf-8", newline="", prefix="ukg2d365-plan-")
                self._memory = []
                self._flush()
            return
        if len(self._pending) >= 4096:
            self._flush()

    @property
    def texts(self) -> list[str]:
        """The distinct line texts, in plan order."""
        return list(self._texts)

    @property
    def digest(self) -> str:
        """SHA-256 of the lines in order (each line's fields and UKG account, unit-separated), kept up as they are
        added."""
        self._flush()
        return self._digest.hexdigest()

    def _flush(self) -> None:
        """The records not yet hashed (and written, once spilled): hashed and written 4,096 at a time."""
        if self._pending:
            block = "".join(self._pending)
            self._pending.clear()
            self._digest.update(block.encode())
            if self._file is not None:
                self._file.write(block)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (PlannedLines, list)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __getitem__(self, index: int) -> PlannedLine:
        if self._file is None:
            return self._memory[index]
        wanted = index + self._count if index < 0 else index
        for position, line in enumerate(self):
            if position == wanted:
                return line
        raise IndexError(index)

    def __iter__(self) -> Iterator[PlannedLine]:
        if self._file is None:
            yield from list(self._memory)
            return
        amount = _amount_of_text
        for number, account, debit, credit, text, source in self._records():
            yield PlannedLine(number, account, amount(debit), amount(credit), text, source)

    def text_rows(self) -> Iterator[TextRow]:
        """(line number, account, debit, credit, text) with the amounts as plain text: what the ledger stores,
        without parsing the amounts into Decimals and printing them again."""
        if self._file is None:
            for ln in list(self._memory):
                yield ln.line_number, ln.account, str(ln.debit), str(ln.credit), ln.text
            return
        for number, account, debit, credit, text, _source in self._records():
            yield number, account, debit, credit, text

    def blocks(self, size: int | None = None) -> Iterator[tuple[int, str]]:
        """(number of lines, records) in blocks of whole records of about ``size`` characters: a spilled journal is
        read from its file as it was written, never split into lines (what the ledger stores, see record_blocks)."""
        size = size or BLOCK_CHARS
        if self._file is None:
            yield from record_blocks(list(self._memory), size)
            return
        self._flush()
        self._file.seek(0)
        rest = ""
        for block in iter(lambda: self._file.read(size) if self._file is not None else "", ""):
            block = rest + block
            cut = block.rfind(RECORD) + 1
            rest = block[cut:]
            if cut:
                whole = block[:cut]
                yield _checked(whole.count(RECORD), whole)
        self._file.seek(0, 2)
        if rest:
            raise ValueError("the spilled plan ends inside a line")

    def _records(self) -> Iterator[tuple[int, str, str, str, str, str]]:
        assert self._file is not None
        self._flush()
        self._file.seek(0)
        number = 0
        rest = ""
        field = self._FIELD
        for block in iter(lambda: self._file.read(1 << 20) if self._file is not None else "", ""):
            records = (rest + block).split(self._RECORD)
            rest = records.pop()
            for record in records:
                account, debit, credit, text, source = record.split(field)
                number += 1
                yield number, account, debit, credit, text, source
        self._file.seek(0, 2)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class LineIds:
    """The (blockId, systemId) pairs of a pay run's GL lines, told apart exactly in about 8 bytes a line.

    UKG documents systemId and blockId as int32, so a pair packs into one 64-bit integer: they are kept in an
    array, each full run of ``RUN`` sorted, and the runs merged once at the end to find a pair seen twice
    (a set of text ids costs ~90 bytes a line: 90 MB for a million-line run). An id that is not a plain
    non-negative number is kept as text in a set, told apart exactly as well.
    """

    RUN = 1 << 16

    def __init__(self) -> None:
        self._run = array("q")
        self._sorted: list[array[int]] = []
        self._texts: set[str] = set()
        self._repeated_texts: list[str] = []

    def add(self, block_id: int, system_id: str) -> None:
        if 0 <= block_id < 1 << 31 and system_id.isdigit() and system_id.isascii() and len(system_id) <= 10 \
                and (system_id[0] != "0" or system_id == "0"):  # one spelling per number: "007" stays text
            number = int(system_id)
            if number < 1 << 32:
                self._run.append(block_id << 32 | number)
                if len(self._run) >= self.RUN:
                    self._sorted.append(array("q", sorted(self._run)))
                    self._run = array("q")
                return
        ident = f"{block_id}/{system_id}"
        if ident in self._texts:
            self._repeated_texts.append(system_id)
        self._texts.add(ident)

    def repeated(self) -> list[str]:
        """The systemIds of the pairs seen more than once (each once per extra copy), numbers in order first."""
        runs = [*self._sorted, array("q", sorted(self._run))]
        merged = heapq.merge(*runs) if len(runs) > 1 else iter(runs[0])
        found = [str(b & 0xFFFFFFFF) for a, b in itertools.pairwise(merged) if a == b]
        return found + self._repeated_texts


def journal_description(key: PostingKey) -> str:
    """The heading and the marker within D365's 60 characters (LedgerJournalTable.Name).

    A heading too long drops its first word ("Payroll": the journal name and line texts say it too), then cuts
    before its legal entity with an ellipsis, never in the entity: D365's journal list must say which entity
    bears the journal (cut blindly, 'GL20261127BW01 @USPM' read '@USP', which could be USPI)."""
    tag = f" [{key.marker}]"
    compact = key.heading.removeprefix("Payroll ")
    for head in (key.heading, compact):
        if len(head) + len(tag) <= DESCRIPTION_MAX:
            return head + tag
    suffix = f" @{key.entity}" if key.entity else ""
    room = DESCRIPTION_MAX - len(tag) - len(suffix)
    return compact.removesuffix(suffix)[: room - 1].rstrip() + "\N{HORIZONTAL ELLIPSIS}" + suffix + tag


def entity_routing(config: Config) -> EntityRouting:
    """Who pays a company and who bears a line, from legal_entities (or the one d365.legal_entity)."""
    entities = config.legal_entities
    if entities is None:
        return EntityRouting(config.d365.legal_entity)
    by_dimension = entities.by_dimension
    return EntityRouting(config.d365.legal_entity, {c: e.upper() for c, e in entities.by_company.items()},
                         by_dimension.dimension if by_dimension else None,
                         {v: e.upper() for v, e in by_dimension.values.items()} if by_dimension else None)


@dataclass
class JournalPlan:
    key: PostingKey
    lines: PlannedLines
    debit_total: Decimal
    credit_total: Decimal
    source_lines: int
    source_hash: str
    accounts: set[str]  # D365 main accounts used
    dimension_values: dict[str, set[str]]  # dimension -> values used
    problems: list[str] = field(default_factory=list)
    # The header facts finance checks before anything is sent: where the journal goes and in what currency.
    legal_entity: str = ""  # as configured (d365.legal_entity or legal_entities); "" before routing
    journal_name: str = ""
    currency: str = ""
    route: str = ""  # how its lines travel to D365 (set by the flow that sends them)
    posting_date: date | None = None  # TransDate; None: the period end
    document_date: date | None = None  # DocumentDate; None: not sent
    reverse_date: date | None = None  # ReverseEntry Yes with this ReverseDate (accruals); None: not reversing
    source_runs: tuple[str, ...] = ()  # the UKG runs an accrual's amounts come from; a pay run is its key's run

    @property
    def run_ids(self) -> str:
        """The UKG run(s) behind the journal, as the ledger's run_id column keeps them."""
        return ",".join(self.source_runs) if self.source_runs else self.key.run_id

    @property
    def description(self) -> str:
        return journal_description(self.key)

    @property
    def trans_date(self) -> date:
        return self.posting_date or self.key.period_end

    @property
    def data_area_id(self) -> str:
        """The legal entity as D365 writes dataAreaId: lower case."""
        return self.legal_entity.lower()

    @property
    def line_texts(self) -> list[str]:
        """The distinct line texts, in plan order (kept as the lines were added: no pass over a spilled journal)."""
        return self.lines.texts

    @property
    def balanced(self) -> bool:
        return self.debit_total == self.credit_total

    @property
    def postable(self) -> bool:
        return not self.problems and bool(self.lines)

    @property
    def plan_hash(self) -> str:
        """The lines' digest, kept up as they were planned (no second pass over a spilled journal)."""
        return self.lines.digest


class JournalBuilder:
    """Accumulates one pay run's GL lines into a JournalPlan."""

    def __init__(self, key: PostingKey, config: Config, mapper: Mapper) -> None:
        self.key = key
        self._summarize = config.payroll.summarize
        self._zero = quantum(config.d365.currency_precision) * 0
        self._zero_text = str(self._zero)
        self._refuse_negatives = config.payroll.negative_amounts == "refuse"
        self._ids = LineIds()
        self._negatives: list[str] = []
        self._line_text = config.payroll.line_text
        self._header = (config.d365.legal_entity, config.d365.journal_name, config.d365.currency)
        self._mapper = mapper
        self._sums: dict[tuple[str, str, str], list[Decimal]] = {}  # (display, ukg account, main) -> [dr, cr]
        # Planned as the lines stream in (not summarizing) or at finish (summarizing): D365 lines take no
        # negatives, so a negative debit is planned as a credit (a reversal) and vice versa.
        self._lines = PlannedLines()
        self._debit_total = Decimal(0)
        self._credit_total = Decimal(0)
        self._summed = False
        self._account_cache: dict[tuple[str, tuple[str, ...]], LedgerAccount] = {}
        self.debit_in = Decimal(0)
        self.credit_in = Decimal(0)
        self.count = 0
        self._unmapped: dict[str, set[str]] = {}
        self._blocks: set[int] = set()
        self._total_blocks: set[int] = set()
        self._digest = hashlib.sha256()  # of UKG's lines as read: the source hash
        self._hashing: list[str] = []  # lines not yet hashed: hashed 4,096 at a time, not one call each
        self._joined: dict[tuple[str, ...], str] = {}  # org levels -> their text in the source hash
        self._texts: dict[str, str] = {}  # UKG account -> line text
        self._routing = entity_routing(config)
        self._paying = self._routing.paying(key.company)
        self._intercompany = config.legal_entities.intercompany if config.legal_entities else None
        self._bearing: dict[str, str] = {}  # display value -> the entity bearing it when not the paying one
        self._line_entities: list[str] = []  # per planned line: its bearing entity, "" for the paying one
        self._tracks_entities = self._routing.dimension is not None and self._intercompany is not None

    def add(self, line: GlDistribution) -> None:
        self.count += 1
        if not line.system_id.startswith("#"):
            # A line UKG returns twice (a paging glitch, a re-run block) would be booked twice.
            self._ids.add(line.block_id, line.system_id)
        if self._refuse_negatives and (line.debit < self._zero or line.credit < self._zero):
            self._negatives.append(line.system_id)
        self.debit_in += line.debit
        self.credit_in += line.credit
        self._blocks.add(line.block_id)
        self._total_blocks.add(line.total_blocks)
        levels = self._joined.get(line.org_levels)
        if levels is None:
            levels = self._joined[line.org_levels] = "|".join(line.org_levels)
        debit, credit = line.debit, line.credit
        amounts = str(debit), str(credit)  # for the source hash and, as they are, the planned line
        self._hashing.append(f"{line.system_id}|{line.account}|{amounts[0]}|{amounts[1]}|{levels}\n")
        if len(self._hashing) >= 4096:
            self._hash_lines()
        cache_key = (line.account, line.org_levels)
        account = self._account_cache.get(cache_key)
        if account is None:
            try:
                account = self._mapper.ledger_account(line.account, line.org_level)
            except MappingError as exc:
                self._unmapped.setdefault(f"{exc.kind} {exc.reason}", set()).add(exc.code)
                return
            self._account_cache[cache_key] = account
            bearing = self._routing.bearing(account.dimensions)
            if bearing is not None and bearing != self._paying:
                self._bearing[account.display] = bearing
        if self._summarize:
            sums = self._sums.setdefault((account.display, line.account, account.main_account),
                                         [Decimal(0), Decimal(0)])
            sums[0] += line.debit
            sums[1] += line.credit
        else:
            self._plan(account.display, line.account, debit, credit, amounts)

    def _plan(self, display: str, ukg_account: str, dr: Decimal, cr: Decimal,
              amounts: tuple[str, str] | None = None) -> None:
        """The debit side's line, then the credit side's; a negative amount is a line on the other side.
        ``amounts``: str() of dr and cr, reused for the one-sided line nearly every UKG line is."""
        zero = self._zero
        if dr != zero:
            if dr > zero:
                self._debit_total += dr
                self._line(display, ukg_account, dr, zero, (amounts[0], self._zero_text) if amounts else None)
            else:
                self._credit_total -= dr
                self._line(display, ukg_account, zero, -dr)
        if cr != zero:
            if cr > zero:
                self._credit_total += cr
                self._line(display, ukg_account, zero, cr, (self._zero_text, amounts[1]) if amounts else None)
            else:
                self._debit_total -= cr
                self._line(display, ukg_account, -cr, zero)

    def _line(self, display: str, ukg_account: str, debit: Decimal, credit: Decimal,
              amounts: tuple[str, str] | None = None) -> None:
        if self._tracks_entities:
            self._line_entities.append(self._bearing.get(display, ""))
        text = self._texts.get(ukg_account) or self._text(ukg_account)
        self._lines.add(display, debit, credit, text, ukg_account, amounts)

    def _text(self, ukg_account: str) -> str:
        text = self._texts.get(ukg_account)
        if text is None:
            text = self._texts[ukg_account] = self._format_text(ukg_account)
        return text

    def _format_text(self, ukg_account: str) -> str:
        k = self.key
        text = self._line_text.format(pay_group=k.pay_group, period_end=k.period_end.isoformat(), run_id=k.run_id,
                                      company=k.company, account=ukg_account)
        return text[:LINE_TEXT_MAX]

    def finish(self) -> JournalPlan:
        """The journal plan of every line added; its problems say why it must not be posted."""
        problems = self._input_problems()
        if self._summarize and not self._summed:
            for (display, ukg_account, _main), (dr, cr) in sorted(self._sums.items()):
                self._plan(display, ukg_account, dr, cr)
            self._summed = True
        lines = self._lines
        debit_total, credit_total = self._debit_total, self._credit_total
        # Judged on the plan, not on the input sums: -100 and +100 debits sum to zero but are two real lines.
        if self.count == 0 or (not lines and not self._unmapped):
            problems.append("empty pay run: no amounts to post")
        if not problems and debit_total != credit_total:  # cannot happen when the input balances
            problems.append(f"plan unbalanced: debits {debit_total:,} != credits {credit_total:,}")
        accounts, dimension_values = self._references()
        return JournalPlan(
            key=self.key,
            lines=lines,
            debit_total=debit_total,
            credit_total=credit_total,
            source_lines=self.count,
            source_hash=self._source_hash(),
            accounts=accounts,
            dimension_values=dimension_values,
            problems=problems,
            legal_entity=self._paying or "",
            journal_name=self._header[1],
            currency=self._header[2],
        )

    def _hash_lines(self) -> None:
        self._digest.update("".join(self._hashing).encode())
        self._hashing.clear()
        if len(self._joined) > 65536:
            self._joined.clear()

    def _source_hash(self) -> str:
        self._hash_lines()
        return self._digest.hexdigest()

    def _input_problems(self) -> list[str]:
        """What is wrong with UKG's lines themselves: unmapped codes, repeats, negatives, imbalance, missing blocks."""
        problems = []
        for reason, codes in sorted(self._unmapped.items()):
            shown = ", ".join(sorted(codes)[:10]) + (f" and {len(codes) - 10} more" if len(codes) > 10 else "")
            problems.append(f"{reason}: {shown}")
        duplicates = self._ids.repeated()
        if duplicates:
            problems.append(f"UKG returned GL line(s) twice (systemId {', '.join(duplicates[:10])}); "
                            "refusing rather than booking them twice")
        if self._negatives:
            problems.append(f"negative amounts on line(s) {', '.join(self._negatives[:10])} "
                            "(payroll.negative_amounts is refuse)")
        if self.debit_in != self.credit_in:
            problems.append(
                f"unbalanced in UKG: debits {self.debit_in:,} != credits {self.credit_in:,} "
                f"(difference {self.debit_in - self.credit_in:,})"
            )
        totals = self._total_blocks
        # What blockId counts from is undocumented (0 or 1): complete means totalNrOfBlocks distinct ids.
        if len(totals) > 1 or (totals and len(self._blocks) != max(totals)):
            problems.append(
                f"incomplete GL run: blocks {sorted(self._blocks)} of {max(totals)} were returned; "
                "wait until UKG has finished the run"
            )
        return problems

    def _references(self, entity: str | None = None) -> tuple[set[str], dict[str, set[str]]]:
        """The D365 main accounts and dimension values (per dimension) some line was mapped to.

        With ``entity``, only the lines that entity bears ("" for the paying one).
        """
        accounts: set[str] = set()
        dims: dict[str, set[str]] = {}
        for account in self._account_cache.values():
            if entity is not None and self._bearing.get(account.display, "") != entity:
                continue
            accounts.add(account.main_account)
            for name, value in account.dimensions:
                if value:
                    dims.setdefault(name, set()).add(value)
        return accounts, dims

    def ledger_accounts(self) -> dict[str, LedgerAccount]:
        """Every account + dimensions a line was mapped to, by display value."""
        return {account.display: account for account in self._account_cache.values()}

    def finish_by_entity(self) -> list[JournalPlan]:
        """One plan per legal entity of the run: the paying entity's first, under the run's own posting key.

        Lines borne by another entity move to that entity's plan (key suffix ``/@ENTITY``), and one pair of
        intercompany lines per bearing entity balances both (see :mod:`ukg2d365.intercompany`).
        """
        whole = self.finish()
        if self._paying is None:
            whole.problems.append(f"UKG company {self.key.company} has no entry in legal_entities.by_company; "
                                  "map it to the D365 legal entity that pays it")
            return [whole]
        moved = self._line_entities
        if not self._bearing or self._intercompany is None:
            return [whole]
        groups: dict[str, list[PlannedLine]] = {}
        for line, entity in zip(whole.lines, moved, strict=True):
            groups.setdefault(entity, []).append(line)
        settle = [ln for t in transfers(self._paying, ((e, ln.debit, ln.credit) for ln, e in
                                                        zip(whole.lines, moved, strict=True) if e))
                  for ln in balancing_lines(t, self._intercompany.due_from_account,
                                            self._intercompany.due_to_account)]
        plans = [self._entity_plan(whole, "", groups.get("", []), settle)]
        plans += [self._entity_plan(whole, entity, groups[entity], settle) for entity in sorted(e for e in groups if e)]
        return plans

    def _entity_plan(self, whole: JournalPlan, entity: str, lines: list[PlannedLine],
                     settle: list[BalancingLine]) -> JournalPlan:
        assert self._paying is not None and self._intercompany is not None
        owner = entity or self._paying
        ic = self._intercompany
        planned = PlannedLines(replace(ln, line_number=i) for i, ln in enumerate(lines, start=1))
        accounts, dims = self._references(entity)
        for ln in settle:
            if ln.entity != owner:
                continue
            display = self._mapper.display_of(ln.main_account, ic.dimensions)
            bearing = ln.counterparty if not entity else entity
            text = f"Intercompany {self._paying}-{bearing} {self.key.pay_group} {self.key.period_end.isoformat()}"
            planned.append(PlannedLine(len(planned) + 1, display, ln.debit, ln.credit, text[:LINE_TEXT_MAX]))
            accounts.add(ln.main_account)
            for name, value in ic.dimensions.items():
                dims.setdefault(name, set()).add(value)
        return JournalPlan(
            key=self.key if not entity else PostingKey(*PostingKey.fields_of_key(self.key), entity=entity),
            lines=planned,
            debit_total=sum((ln.debit for ln in planned), self._zero),
            credit_total=sum((ln.credit for ln in planned), self._zero),
            source_lines=whole.source_lines,
            source_hash=whole.source_hash,
            accounts=accounts,
            dimension_values=dims,
            problems=list(whole.problems),
            legal_entity=owner,
            journal_name=whole.journal_name,
            currency=whole.currency,
        )


class JournalRouter:
    """Feeds each GL line to the JournalBuilder of its pay run; whether a pay run is wanted is asked once."""

    def __init__(self, config: Config, mapper: Mapper, wanted: Callable[[PostingKey], bool] = lambda key: True) -> None:
        self._config = config
        self._mapper = mapper
        self._wanted = wanted
        self._routes: dict[tuple[str, str, date, str], JournalBuilder | None] = {}  # None: not wanted
        self.builders: dict[PostingKey, JournalBuilder] = {}
        self.keys_seen: list[PostingKey] = []  # every distinct pay run, wanted or not, in the order met

    def add(self, line: GlDistribution) -> None:
        # A run's lines share one posting key: decide once per distinct key, not once per line.
        ident = (line.company, line.pay_group, line.period_end, line.run_id)  # PostingKey.fields_of, inlined
        try:
            builder = self._routes[ident]
        except KeyError:
            key = PostingKey(*ident)
            self.keys_seen.append(key)
            builder = JournalBuilder(key, self._config, self._mapper) if self._wanted(key) else None
            if builder is not None:
                self.builders[key] = builder
            self._routes[ident] = builder
        if builder is not None:
            builder.add(line)

    def journals(self) -> list[JournalPlan]:
        """The wanted pay runs' journal plans, in posting key order, one per legal entity of each run."""
        return [plan for key in sorted(self.builders) for plan in self.builders[key].finish_by_entity()]


def build_journals(lines: Iterable[GlDistribution], config: Config) -> list[JournalPlan]:
    """Group lines by posting key and plan each journal, in the configured dimension formats (no D365)."""
    router = JournalRouter(config, Mapper(config.mapping))
    for line in lines:
        router.add(line)
    return router.journals()
