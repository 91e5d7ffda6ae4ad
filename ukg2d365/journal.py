"""Journal planning: UKG GL lines -> one balanced D365 general journal per pay run. Pure; no I/O.

A ``JournalBuilder`` is fed the GL lines of one pay run as they stream in and keeps only what the
journal needs (sums per account + dimensions when summarizing), so memory does not grow with the
number of UKG lines when summarizing.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cached_property

from ukg2d365.config import Config
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


@dataclass(frozen=True, order=True)
class PostingKey:
    """The identity of a pay run's posting: company, pay group, period end, UKG run id.

    GL v2 distributions carry no employee number (ukg-api's GL line has none), so a posting is per pay run.
    """

    company: str
    pay_group: str
    period_end: date
    run_id: str

    @property
    def text(self) -> str:
        return "/".join([self.company, self.pay_group, self.period_end.isoformat(), self.run_id])

    @property
    def marker(self) -> str:
        """Short, stable tag written into the journal's Description so D365 can be searched by it."""
        digest = hashlib.sha256(self.text.encode()).digest()
        return MARKER_PREFIX + base64.b32encode(digest).decode()[:12]

    @classmethod
    def of(cls, line: GlDistribution) -> PostingKey:
        return cls(*cls.fields_of(line))

    @staticmethod
    def fields_of(line: GlDistribution) -> tuple[str, str, date, str]:
        """The key's fields as a plain tuple: cheap to hash once per line, before any PostingKey exists."""
        return line.company, line.pay_group, line.period_end, line.run_id


def journal_description(key: PostingKey) -> str:
    tag = f" [{key.marker}]"
    head = f"Payroll {key.pay_group} {key.period_end.isoformat()} {key.run_id}"
    return head[: DESCRIPTION_MAX - len(tag)].rstrip() + tag


@dataclass
class JournalPlan:
    key: PostingKey
    lines: list[PlannedLine]
    debit_total: Decimal
    credit_total: Decimal
    source_lines: int
    source_hash: str
    accounts: set[str]  # D365 main accounts used
    dimension_values: dict[str, set[str]]  # dimension -> values used
    problems: list[str] = field(default_factory=list)
    # The header facts finance checks before anything is sent: where the journal goes and in what currency.
    legal_entity: str = ""
    journal_name: str = ""
    currency: str = ""
    route: str = ""  # how its lines travel to D365 (set by the flow that sends them)

    @property
    def description(self) -> str:
        return journal_description(self.key)

    @property
    def trans_date(self) -> date:
        return self.key.period_end

    @property
    def line_texts(self) -> list[str]:
        """The distinct line texts, in plan order."""
        return list(dict.fromkeys(line.text for line in self.lines))

    @property
    def balanced(self) -> bool:
        return self.debit_total == self.credit_total

    @property
    def postable(self) -> bool:
        return not self.problems and bool(self.lines)

    @cached_property
    def plan_hash(self) -> str:  # lines are never changed once planned; 100,000 lines cost ~60 ms to hash
        digest = hashlib.sha256()
        for ln in self.lines:
            digest.update(f"{ln.line_number}|{ln.account}|{ln.debit}|{ln.credit}|{ln.text}\n".encode())
        return digest.hexdigest()


class JournalBuilder:
    """Accumulates one pay run's GL lines into a JournalPlan."""

    def __init__(self, key: PostingKey, config: Config, mapper: Mapper) -> None:
        self.key = key
        self._summarize = config.payroll.summarize
        self._zero = quantum(config.d365.currency_precision) * 0
        self._refuse_negatives = config.payroll.negative_amounts == "refuse"
        self._seen_ids: set[str] = set()
        self._duplicates: list[str] = []
        self._negatives: list[str] = []
        self._line_text = config.payroll.line_text
        self._header = (config.d365.legal_entity, config.d365.journal_name, config.d365.currency)
        self._mapper = mapper
        self._sums: dict[tuple[str, str, str], list[Decimal]] = {}  # (display, ukg account, main) -> [dr, cr]
        # Planned as the lines stream in (not summarizing) or at finish (summarizing): D365 lines take no
        # negatives, so a negative debit is planned as a credit (a reversal) and vice versa.
        self._lines: list[PlannedLine] = []
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
        self._digest = hashlib.sha256()
        self._texts: dict[str, str] = {}  # UKG account -> line text

    def add(self, line: GlDistribution) -> None:
        self.count += 1
        if not line.system_id.startswith("#"):
            # A line UKG returns twice (a paging glitch, a re-run block) would be booked twice.
            ident = f"{line.block_id}/{line.system_id}"
            if ident in self._seen_ids:
                self._duplicates.append(line.system_id)
            self._seen_ids.add(ident)
        if self._refuse_negatives and (line.debit < 0 or line.credit < 0):
            self._negatives.append(line.system_id)
        self.debit_in += line.debit
        self.credit_in += line.credit
        self._blocks.add(line.block_id)
        self._total_blocks.add(line.total_blocks)
        self._digest.update(
            f"{line.system_id}|{line.account}|{line.debit}|{line.credit}|{'|'.join(line.org_levels)}\n".encode()
        )
        cache_key = (line.account, line.org_levels)
        account = self._account_cache.get(cache_key)
        if account is None:
            try:
                account = self._mapper.ledger_account(line.account, line.org_level)
            except MappingError as exc:
                self._unmapped.setdefault(f"{exc.kind} {exc.reason}", set()).add(exc.code)
                return
            self._account_cache[cache_key] = account
        if self._summarize:
            sums = self._sums.setdefault((account.display, line.account, account.main_account),
                                         [Decimal(0), Decimal(0)])
            sums[0] += line.debit
            sums[1] += line.credit
        else:
            self._plan(account.display, line.account, line.debit, line.credit)

    def _plan(self, display: str, ukg_account: str, dr: Decimal, cr: Decimal) -> None:
        for amount, is_debit in ((dr, True), (cr, False)):
            if amount == 0:
                continue
            debit_side = is_debit if amount > 0 else not is_debit
            magnitude = -amount if amount < 0 else amount
            if debit_side:
                self._debit_total += magnitude
            else:
                self._credit_total += magnitude
            self._lines.append(PlannedLine(
                line_number=len(self._lines) + 1,
                account=display,
                debit=magnitude if debit_side else self._zero,
                credit=self._zero if debit_side else magnitude,
                text=self._text(ukg_account),
            ))

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
            source_hash=self._digest.hexdigest(),
            accounts=accounts,
            dimension_values=dimension_values,
            problems=problems,
            legal_entity=self._header[0],
            journal_name=self._header[1],
            currency=self._header[2],
        )

    def _input_problems(self) -> list[str]:
        """What is wrong with UKG's lines themselves: unmapped codes, repeats, negatives, imbalance, missing blocks."""
        problems = []
        for reason, codes in sorted(self._unmapped.items()):
            shown = ", ".join(sorted(codes)[:10]) + (f" and {len(codes) - 10} more" if len(codes) > 10 else "")
            problems.append(f"{reason}: {shown}")
        if self._duplicates:
            problems.append(f"UKG returned GL line(s) twice (systemId {', '.join(self._duplicates[:10])}); "
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

    def _references(self) -> tuple[set[str], dict[str, set[str]]]:
        """The D365 main accounts and dimension values (per dimension) some line was mapped to."""
        accounts: set[str] = set()
        dims: dict[str, set[str]] = {}
        for account in self._account_cache.values():
            accounts.add(account.main_account)
            for name, value in account.dimensions:
                if value:
                    dims.setdefault(name, set()).add(value)
        return accounts, dims


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
        ident = PostingKey.fields_of(line)
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
        """The wanted pay runs' journal plans, in posting key order."""
        return [self.builders[key].finish() for key in sorted(self.builders)]


def build_journals(lines: Iterable[GlDistribution], config: Config) -> list[JournalPlan]:
    """Group lines by posting key and plan each journal, in the configured dimension formats (no D365)."""
    router = JournalRouter(config, Mapper(config.mapping))
    for line in lines:
        router.add(line)
    return router.journals()
