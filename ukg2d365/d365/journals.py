"""General journals in D365: find them by marker, read their lines, build their bodies, compare lines. No ledger.

Everything here is D365 knowledge shared by the exactly-once poster, post-payroll's look-up before planning
and reconcile: one search by marker, one read of a journal's lines, one notion of "the same line". The
legal entity is a parameter of every call (``data_area_id``, lower case as D365's keys carry it), never read
from the config here, so a journal may live in any company.
"""

from __future__ import annotations

import hashlib
import itertools
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ukg2d365.d365.odata import ODataClient, chunked, filter_eq
from ukg2d365.errors import RemoteError
from ukg2d365.journal import PlannedLine

HEADERS = "LedgerJournalHeaders"
LINES = "LedgerJournalLines"
JOURNAL_NAMES = "JournalNames"
HEADER_FIELDS = ["dataAreaId", "JournalBatchNumber", "Description", "IsPosted"]
LINE_FIELDS = ["LineNumber", "AccountDisplayValue", "DebitAmount", "CreditAmount", "TransDate", "Text", "Voucher",
               "ReverseEntry", "ReverseDate"]
NEW_VOUCHER_SETTINGS = ("OneVoucher", "BalanceSheet", "Manually")
MARKERS_PER_QUERY = 25  # keeps the URL well under the 2,048 characters proxies commonly allow

LineKey = tuple[str, Decimal, Decimal, str, str, str]


# ---------------------------------------------------------------------- reads


def find_journals(odata: ODataClient, data_area_id: str | Iterable[str],
                  markers: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Every journal header whose Description carries each marker (cross-company), a few markers per query.

    ``data_area_id`` is one legal entity or several (the entities of a run's journals: still one query).

    Each marker given is a key of the answer, with ``[]`` when D365 holds no journal carrying it. D365
    matches the ``*marker*`` wildcard without case (SQL collation), so the headers are told apart the same way.
    """
    wanted = list(dict.fromkeys(markers))
    found: dict[str, list[dict[str, Any]]] = {marker: [] for marker in wanted}
    entities = [data_area_id] if isinstance(data_area_id, str) else sorted(set(data_area_id))
    areas = " or ".join(filter_eq("dataAreaId", area) for area in entities)
    areas = f"({areas})" if len(entities) > 1 else areas
    for chunk in chunked(wanted, MARKERS_PER_QUERY):
        either = " or ".join(f"Description eq '*{marker}*'" for marker in chunk)
        flt = f"{areas} and ({either})"
        for header in odata.get_all(HEADERS, filter=flt, cross_company=True, select=HEADER_FIELDS):
            description = str(header.get("Description") or "").casefold()
            for marker in chunk:
                if marker.casefold() in description:
                    found[marker].append(header)
    return found


def journal_lines(odata: ODataClient, data_area_id: str, number: str, top: int | None = None) -> list[dict[str, Any]]:
    """The lines of journal ``number`` (LINE_FIELDS), in D365's order; ``top=1`` asks only whether it has any."""
    return list(journal_rows(odata, data_area_id, number, top))


def journal_rows(odata: ODataClient, data_area_id: str, number: str,
                 top: int | None = None) -> Iterator[dict[str, Any]]:
    """The lines of journal ``number`` as D365 pages them: a page in memory at a time, not the journal."""
    flt = f"{filter_eq('dataAreaId', data_area_id)} and {filter_eq('JournalBatchNumber', number)}"
    return odata.get_all(LINES, filter=flt, cross_company=True, select=LINE_FIELDS, top=top)


def is_posted(header: dict[str, Any]) -> bool:
    return str(header.get("IsPosted", "No")) == "Yes"


def posted_states(odata: ODataClient, numbers: Iterable[str], data_area_id: str) -> dict[str, bool]:
    """IsPosted of each journal number D365 holds: one read per 25 numbers, cross-company, three fields.

    A number D365 does not hold (deleted there) is absent from the answer. Numbers come from a number
    sequence per company; where two companies hold the same one, ``data_area_id``'s journal wins.
    """
    wanted = list(dict.fromkeys(numbers))
    states: dict[str, bool] = {}
    for chunk in chunked(wanted, MARKERS_PER_QUERY):
        flt = " or ".join(filter_eq("JournalBatchNumber", number) for number in chunk)
        for header in odata.get_all(HEADERS, filter=flt, cross_company=True,
                                    select=["dataAreaId", "JournalBatchNumber", "IsPosted"]):
            number = str(header.get("JournalBatchNumber"))
            if number not in states or str(header.get("dataAreaId", "")).lower() == data_area_id:
                states[number] = is_posted(header)
    return states


@dataclass(frozen=True)
class JournalNameSetup:
    """The journal name's voucher rules, as JournalNames holds them."""

    name: str
    new_voucher: str  # OneVoucher | BalanceSheet | Manually
    voucher_series: str | None

    @property
    def sequential(self) -> bool:
        """BalanceSheet vouchers depend on the order lines arrive in: one changeset at a time."""
        return self.new_voucher == "BalanceSheet"

    @property
    def explicit_voucher(self) -> bool:
        return self.new_voucher == "Manually"


def read_journal_name(odata: ODataClient, data_area_id: str, journal_name: str) -> JournalNameSetup:
    """The journal name and its NewVoucher setting; refused, named, when D365 has no such name in the company."""
    row = odata.get(JOURNAL_NAMES, {"dataAreaId": data_area_id, "Name": journal_name})
    if row is None:
        raise RemoteError(
            f"journal name {journal_name} does not exist in D365 company {data_area_id.upper()}",
            hint="create it under General ledger > Journal setup > Journal names, or set d365.journal_name",
        )
    setting = str(row.get("NewVoucher") or "")
    if setting not in NEW_VOUCHER_SETTINGS:
        raise RemoteError(
            f"journal name {journal_name}: New voucher is {setting or 'empty'!s}, expected one of "
            f"{', '.join(NEW_VOUCHER_SETTINGS)}"
        )
    series = row.get("VoucherSeriesCode")
    return JournalNameSetup(journal_name, setting, str(series) if series else None)


# ---------------------------------------------------------------------- bodies and keys (pure)


def header_body(data_area_id: str, journal_name: str, description: str) -> dict[str, Any]:
    """A LedgerJournalHeaders POST body: the Description carries the posting's marker."""
    return {"dataAreaId": data_area_id, "JournalName": journal_name, "Description": description}


def line_body(
    data_area_id: str,
    journal_batch_number: str,
    trans_date: str,
    line: PlannedLine,
    currency: str,
    *,
    line_number: int | None = None,
    voucher: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A LedgerJournalLines POST body; ``line_number`` only when the client numbers lines, else D365 does."""
    body: dict[str, Any] = {
        "dataAreaId": data_area_id,
        "JournalBatchNumber": journal_batch_number,
        "TransDate": f"{trans_date}T12:00:00Z",
        "AccountType": "Ledger",
        "AccountDisplayValue": line.account,
        "DebitAmount": line.debit,
        "CreditAmount": line.credit,
        "CurrencyCode": currency,
        "Text": line.text,
    }
    if line_number is not None:
        body["LineNumber"] = Decimal(line_number)
    if voucher is not None:
        body["Voucher"] = voucher
    if extra:
        body.update(extra)
    return body


def line_number_key(row: dict[str, Any]) -> Any:
    """The row's LineNumber as a key literal: ``3``, not ``3.0000000000000000``."""
    number = _int(row.get("LineNumber"))
    return number if number is not None else _dec(row.get("LineNumber"))


def line_key(account: Any, debit: Any, credit: Any, trans_date: Any, text: Any, reverse_date: Any = None) -> LineKey:
    """What makes two journal lines the same line, whoever numbered them.

    D365 answers the date as a date-time (``2026-06-26T12:00:00Z`` in NangoHQ/integration-templates
    integrations/microsoft-dynamics-365-finance-and-operations-cc/tests/list-ledger-journal-lines.test.json)
    and the amounts as numbers of any scale, so those are normalized; dimension values are compared without
    case, as D365 matches them. ``reverse_date`` is the ReverseDate of a reversing line (an accrual), "" or None
    for a line that does not reverse.
    """
    return (
        str(account or "").casefold(),
        _dec(debit) or Decimal(0),
        _dec(credit) or Decimal(0),
        str(trans_date or "")[:10],
        str(text or "").rstrip(),
        str(reverse_date or "")[:10],
    )


def row_reversal(row: Mapping[str, Any]) -> str:
    """A D365 line's ReverseDate when it reverses, else "": a line that does not reverse answers ReverseEntry
    ``No`` and ReverseDate ``1900-01-01T12:00:00Z``, D365's empty date (the recorded answer held by
    tests/sandbox/test_live_contract.py, NangoHQ/integration-templates list-ledger-journal-lines.test.json)."""
    return str(row.get("ReverseDate") or "")[:10] if str(row.get("ReverseEntry") or "") == "Yes" else ""


def row_key(row: Mapping[str, Any], reverse_date: str | None = None) -> LineKey:
    """``line_key`` of a D365 row. Its reversal counts only against a plan whose lines reverse (``reverse_date``
    given): a pay run's lines are matched as they always were."""
    return line_key(row.get("AccountDisplayValue"), row.get("DebitAmount"), row.get("CreditAmount"),
                    row.get("TransDate"), row.get("Text"), row_reversal(row) if reverse_date else None)


class VoucherTotals:
    """Debit minus credit per (voucher, date) of a journal's rows, summed as the rows stream past."""

    def __init__(self) -> None:
        self.balance: dict[tuple[str, str], Decimal] = defaultdict(Decimal)

    def add(self, row: dict[str, Any]) -> None:
        voucher = (str(row.get("Voucher") or ""), str(row.get("TransDate") or "")[:10])
        self.balance[voucher] += (_dec(row.get("DebitAmount")) or Decimal(0)) - (_dec(row.get("CreditAmount")) or 0)

    def differences(self) -> dict[tuple[str, str], Decimal]:
        """Where it is not zero: the vouchers finance could not post."""
        return {v: d for v, d in self.balance.items() if d != 0}

    @property
    def vouchers(self) -> int:
        return len({voucher for voucher, _ in self.balance})


@dataclass
class LineMatch:
    """D365's lines against the plan, as multisets of content."""

    missing: Sequence[int]  # numbers of the planned lines D365 lacks, in plan order
    surplus: list[dict[str, Any]]  # D365 rows the plan does not account for (their LineNumber)
    matched: int
    occupied: set[int] = field(default_factory=set)  # line numbers D365 holds that stay (client numbers only)
    rows: int = 0  # D365 rows read
    vouchers: VoucherTotals = field(default_factory=VoucherTotals)


def match_lines(
    planned: Iterable[PlannedLine], trans_date: str, rows: Iterable[dict[str, Any]], *, by_number: bool,
    reverse_date: str | None = None,
) -> LineMatch:
    """Pair D365 rows with planned lines by content; the rest is missing (plan) or surplus (D365).

    Rows are taken in D365's line order, so when a line landed twice the later copy (a late write) is the
    surplus one. With client line numbers a row is first paired with the planned line of its own number.
    Neither side is held whole: ``planned`` (walked twice; the ledger's stored plan reads it again) is counted
    as a multiset of 16-byte content digests, and ``rows`` stream past, keeping only the LineNumber and digest
    of a row not paired by its number, and the voucher totals. ``reverse_date``: the plan's lines reverse on
    that day (an accrual), so a row must reverse on it too.
    """
    if iter(planned) is planned:  # a one-shot iterator cannot be walked twice
        planned = list(planned)
    need: Counter[bytes] = Counter()
    by_num: dict[int, bytes] = {}
    for ln in planned:
        digest = _planned_digest(ln, trans_date, reverse_date)
        need[digest] += 1
        if by_number:
            by_num[ln.line_number] = digest
    taken: set[int] = set()  # planned line numbers paired with the D365 row of the same number
    occupied: set[int] = set()
    unpaired = _Unpaired()
    vouchers = VoucherTotals()
    count = 0
    for row in rows:
        count += 1
        vouchers.add(row)
        digest = _line_digest(row_key(row, reverse_date))
        number = _int(row.get("LineNumber")) if by_number else None
        if number is not None and number not in taken and by_num.get(number) == digest:
            taken.add(number)
            need[digest] -= 1
            occupied.add(number)
            continue
        unpaired.add(line_number_key(row), digest)
    paired: Counter[bytes] = Counter()  # planned lines of each content paired freely, first ones in plan order
    surplus: list[dict[str, Any]] = []
    for number_key, digest in unpaired.in_line_order():
        if need[digest] <= 0:
            surplus.append({"LineNumber": number_key})
            continue
        need[digest] -= 1
        paired[digest] += 1
        if by_number and isinstance(number_key, int):
            occupied.add(number_key)
    missing = array("q")
    planned_count = 0
    for ln in planned:
        planned_count += 1
        if ln.line_number in taken:
            continue
        digest = _planned_digest(ln, trans_date, reverse_date)
        if paired[digest] > 0:
            paired[digest] -= 1
        else:
            missing.append(ln.line_number)
    return LineMatch(missing, surplus, planned_count - len(missing), occupied, count, vouchers)


class _Unpaired:
    """The D365 rows not paired by their number: (LineNumber, digest) in 24 bytes a row, in arrival order."""

    def __init__(self) -> None:
        self._numbers = array("q")
        self._digests = bytearray()  # 16 bytes a row
        self._general: list[tuple[Any, bytes]] | None = None  # once a LineNumber is not a whole number

    def add(self, number: Any, digest: bytes) -> None:
        if self._general is None and type(number) is int and -(1 << 63) <= number < 1 << 63:
            self._numbers.append(number)
            self._digests += digest
            return
        if self._general is None:
            self._general = list(self._compact(range(len(self._numbers))))
            self._numbers, self._digests = array("q"), bytearray()
        self._general.append((number, digest))

    def _compact(self, order: Iterable[int]) -> Iterator[tuple[int, bytes]]:
        view = memoryview(self._digests)
        for i in order:
            yield self._numbers[i], view[16 * i:16 * i + 16].tobytes()

    def in_line_order(self) -> Iterator[tuple[Any, bytes]]:
        """Sorted by LineNumber, rows of one number in D365's order (stable); D365 pages them sorted as a rule."""
        if self._general is not None:
            yield from sorted(self._general, key=lambda item: item[0] or 0)
            return
        numbers = self._numbers
        if all(a <= b for a, b in itertools.pairwise(numbers)):
            yield from self._compact(range(len(numbers)))
        else:
            yield from self._compact(sorted(range(len(numbers)), key=numbers.__getitem__))


def _planned_digest(line: PlannedLine, trans_date: str, reverse_date: str | None) -> bytes:
    return _line_digest(line_key(line.account, line.debit, line.credit, trans_date, line.text, reverse_date))


def _line_digest(key: LineKey) -> bytes:
    """16 bytes standing for a line key: equal keys (amounts of any scale) give equal digests, and two different
    keys colliding is as unlikely as 2^-128 allows, so counting digests is counting keys."""
    account, debit, credit, day, text, reverses = key
    joined = "\x1f".join((account, _canonical(debit), _canonical(credit), day, text, reverses))
    return hashlib.blake2b(joined.encode(), digest_size=16).digest()


def _canonical(amount: Decimal) -> str:
    """One spelling per value: 5, 5.00 and 5.0000000000000000 all read 5."""
    return "0" if amount == 0 else str(amount.normalize())


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def _int(value: Any) -> int | None:
    number = _dec(value)
    return int(number) if number is not None and number == number.to_integral_value() else None
