"""Read UKG GL lines into one ``JournalBuilder`` per pay run: the loop post-payroll and reconcile share.

The source is any iterable of raw GL items (UKG's JSON objects as the client yields them, or the rows of UKG's
GL export file as :mod:`ukg2d365.ukg.gl_file` turns them into the same items), so the same loop plans from the
API or from the file. Each item is validated
(:func:`ukg2d365.ukg.records.parse_gl_line`); an item that fails is attributed to its run when it names one;
every valid line goes to the builder of its posting key, decided once per distinct key, or is skipped when
the selection excludes it. Nothing is written; the builders keep only what the journals need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ukg2d365.config import Config
from ukg2d365.errors import DataError, UsageError
from ukg2d365.flows.reference import ReferenceData
from ukg2d365.flows.runtime import Context
from ukg2d365.journal import JournalPlan, JournalRouter, PostingKey
from ukg2d365.mapping import Mapper
from ukg2d365.ukg.gl_file import GlFile
from ukg2d365.ukg.records import parse_gl_line


@dataclass(frozen=True)
class GlFilter:
    """Which pay runs a command wants, by the fields of their posting key. Empty fields select everything."""

    companies: frozenset[str] = frozenset()
    pay_group: str | None = None
    period_end: date | None = None
    periods: frozenset[tuple[str, date]] | None = None  # (pay group, period end) pairs: --due's targets
    run_id: str | None = None
    period_from: date | None = None
    period_to: date | None = None

    def covers(self, key: PostingKey) -> bool:
        """Whether this pay run is selected."""
        return ((not self.companies or key.company in self.companies)
                and (self.run_id is None or key.run_id == self.run_id)
                and (not self.pay_group or key.pay_group == self.pay_group)
                and (self.period_end is None or key.period_end == self.period_end)
                and (self.periods is None or (key.pay_group, key.period_end) in self.periods)
                and (self.period_from is None or key.period_end >= self.period_from)
                and (self.period_to is None or key.period_end <= self.period_to))

    def may_cover(self, raw: Any) -> bool:
        """Best effort on an item that failed validation: could it be part of what was selected?

        Only the pay group and the period end (one, or --due's) are tested, as far as the item carries them; a bad
        line of another company, another run or outside a range of periods is still reported.
        """
        if not isinstance(raw, dict):
            return True
        if self.pay_group and raw.get("payGroup") not in (None, self.pay_group):
            return False
        period = str(raw.get("periodEndDate") or raw.get("payPeriodEndDate") or "")[:10]
        if self.period_end and period and period != self.period_end.isoformat():
            return False
        if self.periods is not None and period and \
                (str(raw.get("payGroup")), period) not in {(pg, d.isoformat()) for pg, d in self.periods}:
            return False
        return True


@dataclass
class GlRead:
    """What one pass over the GL lines found: the journals of the wanted pay runs and the lines that failed."""

    router: JournalRouter
    errors_by_run: dict[str, list[str]] = field(default_factory=dict)  # run id ("" when none) -> messages
    lines_read: int = 0

    @property
    def keys_seen(self) -> list[PostingKey]:
        """Every distinct pay run read, wanted or not."""
        return self.router.keys_seen

    def journals(self) -> list[JournalPlan]:
        """The wanted pay runs' journal plans, in posting key order, one per legal entity of each run."""
        return self.router.journals()


def read_gl(
    items: Iterable[Any],
    config: Config,
    mapper: Mapper,
    *,
    wanted: Callable[[PostingKey], bool],
    may_want: Callable[[Any], bool] = lambda raw: True,
) -> GlRead:
    """Validate each raw GL item and feed it to its pay run's builder when ``wanted``; the rest is counted.

    ``may_want`` decides whether an item that fails validation is reported at all (a bad line of a pay run
    nobody asked for is not this run's business).
    """
    read = GlRead(JournalRouter(config, mapper, wanted))
    precision = config.d365.currency_precision
    add = read.router.add
    position = 0
    for position, raw in enumerate(items, start=1):
        try:
            line = parse_gl_line(raw, position, precision)
        except DataError as exc:
            if may_want(raw):
                run = raw.get("runId") if isinstance(raw, dict) else None
                read.errors_by_run.setdefault(str(run) if run else "", []).append(str(exc))
            continue
        add(line)
    read.lines_read += position
    return read


def ledger_mapper(ctx: Context, command: str, *, fresh: bool = True) -> Mapper:
    """A mapper in D365's active ledger dimension format; SetupError (audited) when lines cannot be built.

    Read fresh by default: a customer may change the global format for another integration, and a line
    built in yesterday's order would put values into the wrong dimensions.
    """
    reference = ReferenceData(ctx.d365, ctx.ledger, ctx.config)
    return Mapper(ctx.config.mapping, reference.require_setup(command, fresh=fresh, delimiter=False))


def gl_file(ctx: Context, path: Path) -> GlFile:
    """UKG's GL export file at ``path``, read through ``file_source:``, checked whole before anything else is
    read: a bad row refuses the file (DataError naming line and column) before D365 is asked anything."""
    source = ctx.config.file_source
    if source is None:
        raise UsageError("--from-file needs a file_source: section in the config",
                         hint="describe the GL export file's layout there; see config.example.yaml")
    file = GlFile(path, source, ctx.config.d365.currency_precision)
    file.check()
    return file
