"""replay: post failed or named postings again from their stored plans, through recovery (never twice).

The flow contract every command shares: ``read_and_plan(ctx, selection)`` reads the ledger and decides,
``apply(ctx, plan, progress)`` sends and records, also what it skips when there is nothing to send.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ukg2d365.errors import UsageError
from ukg2d365.flows.journal_poster import JournalPoster, PostOutcome
from ukg2d365.flows.runtime import Context, current_posting
from ukg2d365.ledger import FAILED, PLANNED, POSTED, SENDING, Posting


@dataclass(frozen=True)
class ReplaySelection:
    """Named postings (keys or markers) and/or every failed, interrupted or unsent one."""

    keys: tuple[str, ...] = ()
    failed: bool = False

    def validate(self) -> None:
        if not self.keys and not self.failed:
            raise UsageError("replay needs posting keys or --failed", hint="see `ukg2d365 status` for keys")


@dataclass
class ReplayPlan:
    to_replay: list[Posting] = field(default_factory=list)
    already_posted: list[Posting] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


@dataclass
class ReplayResult:
    plan: ReplayPlan
    outcomes: list[PostOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[PostOutcome]:
        return [o for o in self.outcomes if o.status != "posted"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.plan.unknown


def read_and_plan(ctx: Context, selection: ReplaySelection) -> ReplayPlan:
    selection.validate()
    ledger = ctx.ledger
    plan = ReplayPlan()
    seen: set[str] = set()
    candidates: list[Posting] = []
    for key in selection.keys:
        posting = ledger.get_posting(key) or _by_marker(ctx, key)
        if posting is None:
            plan.unknown.append(key)
        else:
            candidates.append(posting)
    if selection.failed:
        for status in (FAILED, SENDING, PLANNED):
            candidates.extend(ledger.find_postings(status=status))
    for posting in candidates:
        if posting.key in seen:
            continue
        seen.add(posting.key)
        (plan.already_posted if posting.status == POSTED else plan.to_replay).append(posting)
    return plan


def _by_marker(ctx: Context, marker: str) -> Posting | None:
    for posting in ctx.ledger.find_postings():
        if posting.marker == marker:
            return posting
    return None


def apply(ctx: Context, plan: ReplayPlan, progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Replay every planned posting; the names that matched nothing and the postings already in D365 are
    recorded too, so the audit shows why a named replay sent nothing."""
    for key in plan.unknown:
        ctx.ledger.audit("replay.unknown", {"key": key, "reason": "no posting with this key or marker"})
    for posting in plan.already_posted:
        ctx.ledger.audit("replay.skipped", {"reason": "already posted",
                                            "journal_batch_number": posting.journal_batch_number}, posting.key)
    result = ReplayResult(plan)
    if not plan.to_replay:
        return result
    poster = JournalPoster(ctx.d365, ctx.ledger, ctx.config.d365, progress, ctx.d365_limit)
    for posting in plan.to_replay:
        token = current_posting.set(posting.key)
        try:
            ctx.ledger.audit("replay", {"previous_status": posting.status, "last_error": posting.last_error},
                             posting.key)
            result.outcomes.append(poster.post(posting, ctx.ledger.plan_lines(posting.key)))
        finally:
            current_posting.reset(token)
    return result
