"""sync-dimensions: read UKG org levels -> plan the missing D365 dimension values -> create only those.

D365's setup is checked first (active ledger dimension format and segment delimiter against the config);
a mismatch stops the run before any write, because every journal line would fail on import anyway.

Creation goes through ``$batch`` with **one operation per changeset**, up to ``d365.batch_size`` operations
per request. Dimension values are independent of each other, so a changeset spanning several of them
would only let one refused value (a description D365 dislikes, a number taken by another operating unit
type) roll back all its neighbours; and F&O answers a failed changeset with a single error, so with one
value per changeset that error names exactly the value it belongs to.

The flow is safe to rerun at any point: the plan compares UKG with what D365 holds *now*, so a value
created by a run that died (or whose ``$batch`` answer was lost) is found as present and not sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ukg2d365.config import Config, DimensionMapping
from ukg2d365.d365.batch import BatchOperation
from ukg2d365.d365.odata import ODataClient, chunked
from ukg2d365.errors import AmbiguousWriteError, RemoteError
from ukg2d365.flows.reference import (
    DIMENSION,
    FINANCIAL_DIMENSION_VALUES,
    MAIN_ACCOUNT,
    OPERATING_UNITS,
    ReferenceData,
    read_dimension_values,
    read_main_accounts,
)
from ukg2d365.flows.runtime import Context
from ukg2d365.mapping import MAX_MAIN_ACCOUNT_LENGTH, Mapper, MappingError, check_segment

WHERE_MAIN_ACCOUNTS = "General ledger > Chart of accounts > Accounts > Main accounts"

Progress = Callable[[int], None]


# ---------------------------------------------------------------------- plan objects


@dataclass(frozen=True)
class DimensionSelection:
    """What sync-dimensions reads: it takes no options, so every mapped dimension and every main account the
    mapping names (the flow contract still passes a selection, like every command's)."""


@dataclass(frozen=True)
class DimensionValue:
    """One D365 dimension value wanted by UKG: the mapped value and the UKG codes that map to it."""

    dimension: str
    value: str
    description: str
    ukg_codes: tuple[str, ...]
    create_in: str  # FinancialDimensionValues | OperatingUnits
    operating_unit_type: str | None = None
    active: bool = True

    @property
    def audit_key(self) -> str:
        return f"dimension:{self.dimension}:{self.value}"


@dataclass(frozen=True)
class SkippedValue:
    dimension: str
    code: str
    reason: str


@dataclass
class DimensionPlan:
    to_create: list[DimensionValue] = field(default_factory=list)
    present: list[DimensionValue] = field(default_factory=list)
    skipped: list[SkippedValue] = field(default_factory=list)
    missing_main_accounts: list[str] = field(default_factory=list)  # D365 ids that mapping.main_accounts names
    main_accounts_checked: int = 0
    org_levels_read: int = 0

    @property
    def problems(self) -> bool:
        """Something a person must look at (exit 1); inactive codes are reported but are not a problem."""
        return bool(self.missing_main_accounts) or any(not s.reason.startswith(INACTIVE) for s in self.skipped)


@dataclass
class CreateOutcome:
    value: DimensionValue
    created: bool
    error: str | None = None


@dataclass
class DimensionResult:
    plan: DimensionPlan
    outcomes: list[CreateOutcome] = field(default_factory=list)

    @property
    def created(self) -> list[CreateOutcome]:
        return [o for o in self.outcomes if o.created]

    @property
    def failed(self) -> list[CreateOutcome]:
        return [o for o in self.outcomes if not o.created]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.plan.problems


INACTIVE = "inactive in UKG"


# ---------------------------------------------------------------------- plan (pure)


def org_level_number(source: str) -> int:
    """'orgLevel2' -> 2."""
    return int(source.removeprefix("orgLevel"))


def _level_of(raw: Mapping[str, Any]) -> int | None:
    level = raw.get("level")
    if isinstance(level, bool):
        return None
    if isinstance(level, int):
        return level
    if isinstance(level, Decimal) and level == level.to_integral_value():
        return int(level)
    if isinstance(level, str) and level.strip().isdigit():
        return int(level.strip())
    return None


def _is_active(raw: Mapping[str, Any]) -> bool:
    # UKG sends a JSON boolean; a missing flag means active (the spec has no default, and skipping every
    # code of a tenant that omits it would be worse than creating one that is unused).
    flag = raw.get("isActive", True)
    if isinstance(flag, str):
        return flag.strip().lower() not in ("false", "0", "no", "n")
    return flag is not False


def plan_dimensions(
    org_levels: Iterable[Mapping[str, Any]],
    d365_values_by_dim: Mapping[str, Iterable[str]],
    config: Config,
) -> DimensionPlan:
    """Compare UKG org levels (mapped through mapping.dimensions) with D365's values. No I/O.

    D365 compares dimension values case-insensitively (SQL collation), so 'prod' in D365 counts as
    present for UKG's 'PROD': creating it would be refused as a duplicate.
    """
    plan = DimensionPlan()
    mapper = Mapper(config.mapping)
    levels = list(org_levels)
    plan.org_levels_read = len(levels)
    for name, dim in config.mapping.dimensions.items():
        existing = {v.casefold() for v in d365_values_by_dim.get(name, ())}
        wanted: dict[str, DimensionValue] = {}  # casefolded value -> merged entry
        if dim.value is not None:
            # A constant is one value every line carries: it must exist in D365 like any other.
            wanted[dim.value.casefold()] = _value(name, dim, dim.value, dim.value, "(constant)", True)
        number = org_level_number(dim.source) if dim.source is not None else 0
        for raw in levels if number else ():
            if _level_of(raw) != number:
                continue
            code = raw.get("code")
            if not isinstance(code, str) or not code.strip():
                plan.skipped.append(SkippedValue(name, str(code), "org level without a code"))
                continue
            try:
                value = mapper.dimension_value(name, code)
            except MappingError as exc:
                plan.skipped.append(SkippedValue(name, code, f"invalid D365 value: {exc.reason}"))
                continue
            description = str(raw.get("description") or "").strip() or value
            entry = _value(name, dim, value, description, code, _is_active(raw))
            previous = wanted.get(value.casefold())
            if previous is not None:
                # Several UKG codes recoded onto one D365 value: one value, active if any of them is.
                entry = DimensionValue(name, previous.value, previous.description,
                                       previous.ukg_codes + (code,), previous.create_in,
                                       previous.operating_unit_type, previous.active or entry.active)
            wanted[value.casefold()] = entry
        for folded, entry in sorted(wanted.items()):
            if folded in existing:
                plan.present.append(entry)
            elif not entry.active:
                codes = ", ".join(entry.ukg_codes)
                plan.skipped.append(SkippedValue(name, codes, f"{INACTIVE}: not created"))
            else:
                plan.to_create.append(entry)
    return plan


def _value(name: str, dim: DimensionMapping, value: str, description: str, code: str, active: bool) -> DimensionValue:
    return DimensionValue(name, value, description, (code,), dim.create_in, dim.operating_unit_type, active)


def main_account_targets(config: Config) -> list[str]:
    """The distinct D365 main accounts that mapping.main_accounts points to."""
    return sorted(set(config.mapping.main_accounts.values()))


# ---------------------------------------------------------------------- read


def read_d365_values(odata: ODataClient, config: Config) -> dict[str, set[str]]:
    """Every D365 value of each mapped dimension (shared values have an empty LegalEntityId)."""
    return {name: read_dimension_values(odata, config, name) for name in config.mapping.dimensions}


def read_and_plan(ctx: Context, selection: DimensionSelection) -> DimensionPlan:
    """Setup checks, then UKG org levels and D365 values -> the plan; fills the ledger's reference cache."""
    config = ctx.config
    reference = ReferenceData(ctx.d365, ctx.ledger, config)
    reference.require_setup("sync-dimensions")  # ledger dimension format and delimiter, read fresh
    org_levels = ctx.ukg.org_levels()
    d365_values = read_d365_values(ctx.d365, config)
    plan = plan_dimensions(org_levels, d365_values, config)

    # Main accounts: a bad id is reported but does not stop dimension values from being created.
    targets = main_account_targets(config)
    valid: list[str] = []
    for account in targets:
        try:
            valid.append(check_segment("main account", account, config.mapping.delimiter, MAX_MAIN_ACCOUNT_LENGTH))
        except MappingError:
            plan.missing_main_accounts.append(account)
    found = read_main_accounts(ctx.d365, valid)
    plan.missing_main_accounts = sorted(set(plan.missing_main_accounts) | (set(valid) - found))
    plan.main_accounts_checked = len(targets)

    # What D365 holds now is the truth: replace the cache so post-payroll needs no reference reads.
    for name, values in d365_values.items():
        ctx.ledger.forget_values(DIMENSION, name)
        ctx.ledger.remember_values(DIMENSION, name, values | {v.value for v in plan.present if v.dimension == name})
    ctx.ledger.remember_values(MAIN_ACCOUNT, "", found)
    return plan


# ---------------------------------------------------------------------- apply


def create_operation(value: DimensionValue) -> BatchOperation:
    """The POST that creates one value: a shared custom-dimension value, or an operating unit."""
    if value.create_in == OPERATING_UNITS:
        # NOT CONFIRMED which fields D365 requires on create, and whether a given OperatingUnitNumber is
        # kept rather than drawn from the number sequence (ntrtd/d365-agent asset/client/src/OperatingUnits.ts
        # lists the entity's fields, not its rules); the result is read back below.
        body: dict[str, Any] = {"OperatingUnitNumber": value.value, "Name": value.description,
                                "OperatingUnitType": value.operating_unit_type}
        return BatchOperation("POST", OPERATING_UNITS, body)
    # NOT CONFIRMED minimal field set (ntrtd/d365-agent asset/client/src/FinancialDimensionValues.ts lists the
    # fields); an empty LegalEntityId makes the value shared.
    body = {"FinancialDimension": value.dimension, "DimensionValue": value.value, "Description": value.description,
            "LegalEntityId": ""}
    return BatchOperation("POST", FINANCIAL_DIMENSION_VALUES, body)


def apply(ctx: Context, plan: DimensionPlan, progress: Progress | None = None) -> DimensionResult:
    """Create every planned value; the ledger gets an audit event before and after each $batch."""
    result = DimensionResult(plan)
    advance = progress or (lambda n: None)
    for present in plan.present:
        ctx.ledger.audit("dimension.present", {"dimension": present.dimension, "value": present.value,
                                               "reason": "already in D365: not created"}, present.audit_key)
    for skipped in plan.skipped:
        ctx.ledger.audit("dimension.skipped", {"dimension": skipped.dimension, "code": skipped.code,
                                               "reason": skipped.reason},
                         f"dimension:{skipped.dimension}:{skipped.code}")
    if plan.missing_main_accounts:
        ctx.ledger.audit("setup.problem", {"command": "sync-dimensions",
                                           "missing_main_accounts": plan.missing_main_accounts})
    for chunk in chunked(plan.to_create, ctx.config.d365.batch_size):
        outcomes = _send_chunk(ctx, chunk)
        for outcome in outcomes:
            value = outcome.value
            if outcome.created:
                ctx.ledger.remember_values(DIMENSION, value.dimension, [value.value])
                ctx.ledger.audit("dimension.created", {"dimension": value.dimension, "value": value.value,
                                                       "entity_set": value.create_in}, value.audit_key)
            else:
                ctx.ledger.audit("dimension.failed", {"dimension": value.dimension, "value": value.value,
                                                      "error": outcome.error}, value.audit_key)
        result.outcomes.extend(outcomes)
        advance(len(chunk))
    return result


def _send_chunk(ctx: Context, chunk: list[DimensionValue]) -> list[CreateOutcome]:
    for value in chunk:
        ctx.ledger.audit("dimension.create", {"dimension": value.dimension, "value": value.value,
                                              "ukg_codes": list(value.ukg_codes), "entity_set": value.create_in},
                         value.audit_key)
    try:
        results = ctx.d365.batch([[create_operation(v)] for v in chunk])
    except AmbiguousWriteError as exc:
        # The $batch may have been processed: look before anything is sent again.
        return _verify_after_ambiguity(ctx, chunk, str(exc))
    except RemoteError as exc:
        # The whole $batch was refused (not one changeset): nothing in it was written.
        return [CreateOutcome(v, False, str(exc)) for v in chunk]
    outcomes = []
    for value, changeset in zip(chunk, results, strict=True):
        if changeset.ok:
            outcomes.append(CreateOutcome(value, True))
        else:
            outcomes.append(CreateOutcome(value, False, changeset.error_message or f"HTTP {changeset.status}"))
    return outcomes


def _verify_after_ambiguity(ctx: Context, chunk: list[DimensionValue], error: str) -> list[CreateOutcome]:
    present = read_d365_values(ctx.d365, ctx.config)
    outcomes = []
    for value in chunk:
        found = value.value.casefold() in {v.casefold() for v in present.get(value.dimension, set())}
        outcomes.append(CreateOutcome(value, found, None if found else
                                      f"not in D365 after an unanswered request ({error}); rerun sync-dimensions"))
    return outcomes
