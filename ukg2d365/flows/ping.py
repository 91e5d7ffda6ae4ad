"""ping: authenticate to both systems, one cheap read each, and a precise diagnosis of what is wrong."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from ukg2d365.d365.dates import time_zone_mismatch
from ukg2d365.d365.journals import read_journal_name
from ukg2d365.d365.odata import filter_eq
from ukg2d365.d365.setup import delimiter_problems, format_summary, setup_problems
from ukg2d365.errors import AuthError, ExitStatus, RemoteUnavailable, Ukg2d365Error
from ukg2d365.flows.reference import ReferenceData, read_dimension_values
from ukg2d365.flows.runtime import Context


@dataclass
class Check:
    system: str
    host: str
    ok: bool
    latency_ms: int | None
    detail: str
    exit_status: ExitStatus = ExitStatus.OK


def _failed(system: str, host: str, exc: Ukg2d365Error) -> Check:
    return Check(system, host, False, None, str(exc), exc.exit_status)


def host_of(url: str) -> str:
    """How every check names its system: host[:port] of the configured URL, never the URL on one line and the
    bare host on the next."""
    return urlsplit(url).netloc or url


def ping(ctx: Context) -> list[Check]:
    checks: list[Check] = [ukg_check(ctx)]

    d365_host = host_of(ctx.config.d365.base_url)
    entra_host = host_of(ctx.config.d365.authority_host)
    try:
        started = time.monotonic()
        ctx.d365.tokens.token()
        token_ms = int((time.monotonic() - started) * 1000)
        checks.append(Check("Entra ID", entra_host, True, token_ms, f"token issued for {ctx.config.d365.scope}"))
    except Ukg2d365Error as exc:
        checks.append(_failed("Entra ID", entra_host, exc))
        return checks
    try:
        d365 = ctx.d365.ping()
        problems = delimiter_problems(ctx.d365, ctx.config.mapping)
        if problems:
            checks.append(Check("D365", d365_host, False, d365.latency_ms, "; ".join(problems),
                                ExitStatus.RECORDS_FAILED))
        else:
            checks.append(Check("D365", d365_host, True, d365.latency_ms,
                                "authenticated; segment delimiter matches the config"))
        checks.append(format_check(ctx, d365_host))
    except (AuthError, RemoteUnavailable, Ukg2d365Error) as exc:
        checks.append(_failed("D365", d365_host, exc))
        return checks
    checks.extend(entity_checks(ctx, d365_host))
    checks.append(time_zone_check(ctx, d365_host))
    return checks


def ukg_check(ctx: Context) -> Check:
    """One cheap UKG read; a config without ukg.base_url (GL export files only) has no UKG API to check."""
    ukg_host = ctx.config.ukg.base_url
    if ukg_host is None:
        return Check("UKG", "-", True, None, "not used: ukg.base_url is not set, so GL runs come only from "
                                            "GL export files (--from-file)")
    try:
        result = ctx.ukg.ping()
    except Ukg2d365Error as exc:
        return _failed("UKG", host_of(ukg_host), exc)
    status = result.error.exit_status if result.error else ExitStatus.OK
    return Check("UKG", host_of(ukg_host), result.ok, result.latency_ms, result.detail, status)


def format_check(ctx: Context, host: str) -> Check:
    """A line of its own: D365's integration formats, what UKG feeds and what stays blank, the guards."""
    started = time.monotonic()
    formats = ReferenceData(ctx.d365, ctx.ledger, ctx.config).dimension_formats(fresh=True)
    latency_ms = int((time.monotonic() - started) * 1000)
    problems = setup_problems(ctx.d365, ctx.config, formats, default_format=True, delimiter=False)
    if problems:
        return Check("D365 formats", host, False, latency_ms, "; ".join(problems), ExitStatus.RECORDS_FAILED)
    return Check("D365 formats", host, True, latency_ms, format_summary(formats, ctx.config.mapping))


VOUCHER_MEANING = {
    "OneVoucher": "every line of a journal in one voucher",
    "BalanceSheet": "a new voucher each time the lines balance; lines are sent one changeset at a time, in order",
    "Manually": "vouchers named by ukg2d365 (one per journal: its marker)",
}


def entity_checks(ctx: Context, host: str) -> list[Check]:
    """The journal name's line; with legal_entities, one line per legal entity named (d365.legal_entity first)."""
    entities = ctx.config.legal_entities
    if entities is None:
        return [_journal_name_check(ctx, host, ctx.config.d365.legal_entity, "Journal name")]
    named = sorted(entities.entities() - {ctx.config.d365.legal_entity.upper()})
    return [_journal_name_check(ctx, host, entity, f"Entity {entity.upper()}")
            for entity in [ctx.config.d365.legal_entity, *named]]


def _journal_name_check(ctx: Context, host: str, entity: str, system: str) -> Check:
    """Its own line: the journal name exists in the entity and its New voucher setting is one the poster handles;
    with legal_entities, also the dimension values the entity's journals are sure to use exist for it there."""
    cfg = ctx.config.d365
    started = time.monotonic()
    try:
        setup = read_journal_name(ctx.d365, entity.lower(), cfg.journal_name)
        missing = _missing_entity_values(ctx, entity)
    except Ukg2d365Error as exc:
        return _failed(system, host, exc)
    latency_ms = int((time.monotonic() - started) * 1000)
    if missing:
        return Check(system, host, False, latency_ms, f"{'; '.join(missing)} (run sync-dimensions, or create "
                     f"them in D365 for {entity.upper()})", ExitStatus.RECORDS_FAILED)
    series = f", voucher series {setup.voucher_series}" if setup.voucher_series else ""
    return Check(system, host, True, latency_ms,
                 f"{setup.name} in {entity.upper()}: New voucher {setup.new_voucher} "
                 f"({VOUCHER_MEANING[setup.new_voucher]}){series}")


def _missing_entity_values(ctx: Context, entity: str) -> list[str]:
    """The by_dimension values an entity bears and the intercompany lines' dimension values that D365 does not
    hold for it (its own or shared). Every entity of legal_entities may get intercompany lines."""
    entities = ctx.config.legal_entities
    if entities is None:
        return []
    wanted: dict[str, set[str]] = {}
    if entities.by_dimension is not None:
        by = entities.by_dimension
        borne = {value for value, bearer in by.values.items() if bearer.upper() == entity.upper()}
        if borne:
            wanted.setdefault(by.dimension, set()).update(borne)
    if entities.intercompany is not None:
        for name, value in entities.intercompany.dimensions.items():
            wanted.setdefault(name, set()).add(value)
    problems = []
    for name, values in sorted(wanted.items()):
        if name not in ctx.config.mapping.dimensions:
            continue  # the config validator names a dimension mapping does not know
        absent = values - read_dimension_values(ctx.d365, ctx.config, name, sorted(values), legal_entity=entity)
        if absent:
            problems.append(f"{name} value(s) {', '.join(sorted(absent))} not in D365 for {entity.upper()}")
    return problems


LEGAL_ENTITIES = "LegalEntities"


def time_zone_check(ctx: Context, host: str) -> Check:
    """Its own line: the legal entity's TimeZone (F&O's enum) next to d365.time_zone (IANA), compared by offset."""
    cfg = ctx.config.d365
    started = time.monotonic()
    try:
        rows = list(ctx.d365.get_all(LEGAL_ENTITIES, filter=filter_eq("LegalEntityId", cfg.data_area_id),
                                     select=["LegalEntityId", "TimeZone"], top=1))
    except Ukg2d365Error as exc:
        return _failed("Time zone", host, exc)
    latency_ms = int((time.monotonic() - started) * 1000)
    if not rows:
        return Check("Time zone", host, False, latency_ms, f"legal entity {cfg.legal_entity.upper()} is not in D365's "
                     f"{LEGAL_ENTITIES}: check d365.legal_entity", ExitStatus.RECORDS_FAILED)
    member = str(rows[0].get("TimeZone") or "")
    detail = (f"d365.time_zone {cfg.time_zone}; legal entity {cfg.legal_entity.upper()}: TimeZone "
              f"{member or '(not set)'}")
    problem = time_zone_mismatch(member, cfg.zone, datetime.now(cfg.zone).year)
    if problem:
        return Check("Time zone", host, False, latency_ms, f"{detail}; {problem}", ExitStatus.RECORDS_FAILED)
    return Check("Time zone", host, True, latency_ms, detail)


def exit_status(checks: list[Check]) -> ExitStatus:
    failures = [c.exit_status for c in checks if not c.ok]
    if not failures:
        return ExitStatus.OK
    for preferred in (ExitStatus.AUTH, ExitStatus.UNAVAILABLE, ExitStatus.USAGE):
        if preferred in failures:
            return preferred
    return ExitStatus.RECORDS_FAILED
