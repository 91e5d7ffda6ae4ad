"""replay: post failed or named postings again from their stored plans, through recovery (never twice)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ukg2d365.errors import UsageError
from ukg2d365.flows.journal_poster import JournalPoster, PostOutcome
from ukg2d365.flows.runtime import Context, current_posting
from ukg2d365.ledger import FAILED, PLANNED, POSTED, SENDING, Posting


@dataclass
class ReplayPlan:
    to_replay: list[Posting] = field(default_factory=list)
    already_posted: list[Posting] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def plan_replay(ctx: Context, keys: list[str], failed: bool) -> ReplayPlan:
    if not keys and not failed:
        raise UsageError("replay needs posting keys or --failed", hint="see `ukg2d365 status` for keys")
    ledger = ctx.ledger
    plan = ReplayPlan()
    seen: set[str] = set()
    candidates: list[Posting] = []
    for key in keys:
        posting = ledger.get_posting(key) or _by_marker(ctx, key)
        if posting is None:
            plan.unknown.append(key)
        else:
            candidates.append(posting)
    if failed:
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


def apply_replay(ctx: Context, plan: ReplayPlan, progress: Callable[[int], None] | None = None) -> list[PostOutcome]:
    poster = JournalPoster(ctx.d365, ctx.ledger, ctx.config.d365, progress, ctx.d365_limit)
    outcomes = []
    for posting in plan.to_replay:
        token = current_posting.set(posting.key)
        try:
            ctx.ledger.audit("replay", {"previous_status": posting.status, "last_error": posting.last_error},
                             posting.key)
            outcomes.append(poster.post(posting, ctx.ledger.plan_lines(posting.key)))
        finally:
            current_posting.reset(token)
    return outcomes
