"""replay: post failed or named postings again from their stored plans, through recovery (never twice); or, with
``--skip``, acknowledge refused runs that will never be posted (a run UKG voided), so ``--due`` and ``status``
leave them alone: explicitly, by key, with a reason, in the audit.

The flow contract every command shares: ``read_and_plan(ctx, selection)`` reads the ledger and decides,
``apply(ctx, plan, progress)`` sends and records, also what it skips when there is nothing to send.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ukg2d365.errors import UsageError
from ukg2d365.flows.dmf_poster import make_poster
from ukg2d365.flows.journal_poster import PostOutcome, posting_route
from ukg2d365.flows.runtime import Context, current_posting
from ukg2d365.ledger import FAILED, PLANNED, POSTED, SENDING, Posting, Refusal


@dataclass(frozen=True)
class ReplaySelection:
    """Named postings (keys or markers) and/or every failed, interrupted or unsent one; or refused runs to skip."""

    keys: tuple[str, ...] = ()
    failed: bool = False
    skip: tuple[str, ...] = ()  # keys of refused runs an operator acknowledges will never be posted
    reason: str | None = None  # why: recorded in the audit with who skipped them

    def validate(self) -> None:
        if self.skip and (self.keys or self.failed):
            raise UsageError("replay --skip cannot be combined with posting keys or --failed",
                             hint="skip refused runs in one command, replay postings in another")
        if self.skip and not (self.reason or "").strip():
            raise UsageError("replay --skip needs --reason TEXT",
                             hint="say why the run will never be posted (e.g. 'voided in UKG'); it is recorded in "
                                  "the audit with who skipped it")
        if self.reason is not None and not self.skip:
            raise UsageError("--reason goes with --skip KEY")
        if not self.keys and not self.failed and not self.skip:
            raise UsageError("replay needs posting keys, --failed or --skip KEY",
                             hint="see `ukg2d365 status` for keys")


@dataclass
class ReplayPlan:
    to_replay: list[Posting] = field(default_factory=list)
    already_posted: list[Posting] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    to_skip: list[Refusal] = field(default_factory=list)
    already_skipped: list[Refusal] = field(default_factory=list)
    not_skippable: list[str] = field(default_factory=list)  # why each of those keys cannot be skipped
    reason: str = ""


@dataclass
class ReplayResult:
    plan: ReplayPlan
    outcomes: list[PostOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[PostOutcome]:
        return [o for o in self.outcomes if o.status != "posted"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.plan.unknown and not self.plan.not_skippable


def read_and_plan(ctx: Context, selection: ReplaySelection) -> ReplayPlan:
    selection.validate()
    ledger = ctx.ledger
    plan = ReplayPlan(reason=(selection.reason or "").strip())
    for key in dict.fromkeys(selection.skip):  # a key named twice is skipped once
        _plan_skip(ctx, plan, key)
        for sibling in _bearing_refusals(ctx, key, named=selection.skip):
            _plan_skip(ctx, plan, sibling)
    seen: set[str] = set()
    candidates: list[Posting] = []
    for key in selection.keys:
        posting = ledger.get_posting(key) or _by_marker(ctx, key)
        if posting is None:
            plan.unknown.append(key)
        else:
            candidates.append(posting)
    if selection.failed:
        unsent = [p for status in (FAILED, SENDING, PLANNED) for p in ledger.find_postings(status=status)]
        skipped = {key for key, r in ledger.refusals_of(p.key for p in unsent).items() if r.skipped}
        candidates.extend(p for p in unsent if p.key not in skipped)  # an operator said never to post those
    for posting in candidates:
        if posting.key in seen:
            continue
        seen.add(posting.key)
        (plan.already_posted if posting.status == POSTED else plan.to_replay).append(posting)
    return plan


def _plan_skip(ctx: Context, plan: ReplayPlan, key: str) -> None:
    """A refused run may be skipped unless it posted, or D365 may hold part of a journal for it."""
    refusal = ctx.ledger.refusal(key)
    posting = ctx.ledger.get_posting(key)
    journal = posting.journal_batch_number if posting is not None else None
    if posting is not None and posting.status == POSTED:
        plan.not_skippable.append(f"{key} is posted (journal {journal}): there is nothing to skip")
    elif refusal is None:
        plan.not_skippable.append(
            f"{key} was never refused: replay it with `ukg2d365 replay {key}`" if posting is not None else
            f"no refused run {key!r} in the ledger (`ukg2d365 status` lists the refused runs by key)")
    elif refusal.skipped:
        plan.already_skipped.append(refusal)
    elif posting is not None and (posting.status == SENDING or journal):
        plan.not_skippable.append(
            f"{key} has a journal in D365 ({journal or 'being sent'}, {posting.status}): finish it with `ukg2d365 "
            f"replay {key}`; a run is never skipped while D365 may hold part of it")
    else:
        plan.to_skip.append(refusal)


def _bearing_refusals(ctx: Context, key: str, *, named: tuple[str, ...]) -> list[str]:
    """The open refusals of the same pay run in the legal entities that bear part of its cost (their keys are
    the run's key + "/@ENTITY", see journal.PostingKey): a run UKG voided is voided in every entity, so skipping
    the run's key skips them too, each checked and listed like a key named on the command line."""
    refusal = ctx.ledger.refusal(key)
    if refusal is None or refusal.kind != "pay_run" or "/@" in key:
        return []
    return [r.key for r in ctx.ledger.open_refusals(kind=refusal.kind, pay_group=refusal.pay_group,
                                                    period_end=refusal.period_end)
            if r.key.startswith(key + "/@") and r.key not in named]


def _by_marker(ctx: Context, marker: str) -> Posting | None:
    for posting in ctx.ledger.find_postings():
        if posting.marker == marker:
            return posting
    return None


def apply(ctx: Context, plan: ReplayPlan, progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Replay every planned posting; the names that matched nothing and the postings already in D365 are
    recorded too, so the audit shows why a named replay sent nothing."""
    for refusal in plan.to_skip:
        ctx.ledger.skip_refusal(refusal.key, plan.reason)
    for why in plan.not_skippable:
        ctx.ledger.audit("replay.not skipped", {"why": why})
    for key in plan.unknown:
        ctx.ledger.audit("replay.unknown", {"key": key, "reason": "no posting with this key or marker"})
    for posting in plan.already_posted:
        ctx.ledger.audit("replay.skipped", {"reason": "already posted",
                                            "journal_batch_number": posting.journal_batch_number}, posting.key)
    result = ReplayResult(plan)
    if not plan.to_replay:
        return result
    poster = make_poster(ctx, progress)
    for posting in plan.to_replay:
        token = current_posting.set(posting.key)
        try:
            ctx.ledger.audit("replay", {"previous_status": posting.status, "last_error": posting.last_error},
                             posting.key)
            result.outcomes.append(poster.post(posting, posting_route(ctx.config, posting)))
        finally:
            current_posting.reset(token)
    return result
