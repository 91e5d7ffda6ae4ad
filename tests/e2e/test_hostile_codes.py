"""Codes with apostrophes, unicode, slashes, spaces: escaped in OData keys and $filter, encoded in
paths, round-tripped through the sandbox; codes that would corrupt an AccountDisplayValue refused by name.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
import responses

from tests.helpers import CONFIG_YAML, gl, make_config
from tests.world import World
from ukg2d365.config import D365Config, load_config, parse_config
from ukg2d365.d365.auth import TokenProvider
from ukg2d365.d365.odata import ODataClient, entity_path, filter_eq, key_predicate, odata_literal
from ukg2d365.flows.runtime import Context
from ukg2d365.http import HttpClient, RetryBudget, RetryPolicy
from ukg2d365.journal import build_journals
from ukg2d365.mapping import Mapper, MappingError
from ukg2d365.ukg.records import parse_gl_line

HOSTILE = ["O'Neil Ave", "''", "Zürich/2", "R&D #1", "50% off+tax", "a?b=c", "東京", "x\\y", "(1,2)", "it's 'quoted'"]


# ---------------------------------------------------------------- literals, keys, paths


@pytest.mark.parametrize("code,literal", [
    ("O'Neil Ave", "'O''Neil Ave'"),
    ("''", "''''''"),
    ("it's 'quoted'", "'it''s ''quoted'''"),
    ("Zürich/2", "'Zürich/2'"),
    ("", "''"),
])
def test_string_literals_double_every_apostrophe(code: str, literal: str) -> None:
    assert odata_literal(code) == literal
    assert filter_eq("DimensionValue", code) == f"DimensionValue eq {literal}"


def test_key_predicate_escapes_each_value() -> None:
    assert key_predicate({"FinancialDimension": "CostCenter", "LegalEntityId": "", "DimensionValue": "O'Neil Ave"}) \
        == "(FinancialDimension='CostCenter',LegalEntityId='',DimensionValue='O''Neil Ave')"


@pytest.mark.parametrize("code", HOSTILE)
def test_entity_path_encodes_everything_that_would_change_the_url(code: str) -> None:
    path = entity_path("OperatingUnits", {"OperatingUnitNumber": code})
    # Nothing in the key can end the path segment, start a query or a fragment, or be a raw non-ASCII byte.
    inside = path[len("OperatingUnits("):-1]
    assert re.fullmatch(r"(?:[A-Za-z0-9_.~()=,'-]|%[0-9A-F]{2})*", inside), inside
    assert unquote(path) == "OperatingUnits" + key_predicate({"OperatingUnitNumber": code})


def test_entity_path_examples() -> None:
    assert entity_path("OperatingUnits", {"OperatingUnitNumber": "Zürich/2"}) == \
        "OperatingUnits(OperatingUnitNumber='Z%C3%BCrich%2F2')"
    assert entity_path("OperatingUnits", {"OperatingUnitNumber": "O'Neil Ave"}) == \
        "OperatingUnits(OperatingUnitNumber='O''Neil%20Ave')"


@pytest.fixture
def d365() -> ODataClient:
    cfg = D365Config(base_url="https://d365.test", tenant_id="t", client_id="c", legal_entity="usmf")

    class App:
        def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
            return {"access_token": "t"}

        def remove_tokens_for_client(self) -> None:
            pass

    policy = RetryPolicy(max_attempts=1, backoff_base=0, backoff_max=0, max_retry_after=0, budget_seconds=0)
    http = HttpClient(system="D365", base_url=cfg.base_url, timeout=5, ca_bundle=None, policy=policy,
                      budget=RetryBudget(0))
    return ODataClient(http, TokenProvider(cfg, "s", requests.Session(), app_factory=lambda **_: App()))


@pytest.mark.parametrize("code", HOSTILE)
@responses.activate
def test_filter_with_a_hostile_code_arrives_exactly_as_written(d365: ODataClient, code: str) -> None:
    responses.get("https://d365.test/data/FinancialDimensionValues", json={"value": []})
    flt = filter_eq("DimensionValue", code)
    list(d365.get_all("FinancialDimensionValues", filter=flt))
    query = urlsplit(responses.calls[0].request.url).query
    assert parse_qs(query)["$filter"] == [flt]  # what the server decodes is the filter we built
    assert "#" not in query and " " not in query


@pytest.mark.parametrize("code", HOSTILE)
@responses.activate
def test_keyed_request_with_a_hostile_code_stays_one_path_segment(d365: ODataClient, code: str) -> None:
    responses.get(re.compile(r"https://d365\.test/data/OperatingUnits\(.*"), json={"OperatingUnitNumber": code})
    assert d365.get("OperatingUnits", {"OperatingUnitNumber": code}) == {"OperatingUnitNumber": code}
    sent = urlsplit(responses.calls[0].request.url)
    assert sent.path.startswith("/data/OperatingUnits(") and sent.path.count("/") == 2
    assert unquote(sent.path) == "/data/OperatingUnits" + key_predicate({"OperatingUnitNumber": code})


# ---------------------------------------------------------------- codes that would corrupt a display value


def mapper(delimiter: str = "-", values: dict[str, str] | None = None) -> Mapper:
    config = make_config()
    config.mapping.delimiter = delimiter
    if values:
        config.mapping.dimensions["CostCenter"].values.update(values)
    return Mapper(config.mapping)


@pytest.mark.parametrize("code,reason", [
    ("1-10", "contains the segment delimiter '-'; it would shift every segment"),
    ("-", "contains the segment delimiter '-'"),
    ("A" * 31, "is longer than D365's 30 characters"),
    ("Zürich-" + "ü" * 5, "contains the segment delimiter"),
    ("tab\there", "contains control characters"),
    ("new\nline", "contains control characters"),
    (" 110", "has leading or trailing spaces"),
])
def test_code_that_would_corrupt_the_display_value_is_refused_naming_it(code: str, reason: str) -> None:
    with pytest.raises(MappingError) as caught:
        mapper().dimension_value("CostCenter", code)
    assert caught.value.code == code and reason in caught.value.reason
    assert repr(code) in str(caught.value)  # "CostCenter '1-10': contains ..."


def test_thirty_characters_and_hostile_but_harmless_codes_are_accepted() -> None:
    m = mapper()
    for code in ["A" * 30, "ü" * 30, "O'Neil Ave", "Zürich/2", "R&D #1", "東京"]:
        assert m.dimension_value("CostCenter", code) == code


def test_a_recode_target_is_checked_too() -> None:
    with pytest.raises(MappingError, match=r"CostCenter 'CC-110': contains the segment delimiter"):
        mapper(values={"110": "CC-110"}).dimension_value("CostCenter", "110")


@pytest.mark.parametrize("delimiter,code", [("|", "A|B"), ("--", "A--B"), (".", "1.5"), ("~~", "x~~y")])
def test_each_configured_delimiter_is_the_one_refused(delimiter: str, code: str) -> None:
    with pytest.raises(MappingError, match="segment delimiter"):
        mapper(delimiter).dimension_value("CostCenter", code)


def test_other_delimiters_inside_a_code_are_harmless() -> None:
    assert mapper("--").dimension_value("CostCenter", "A-B") == "A-B"


def test_main_account_longer_than_20_or_holding_the_delimiter_is_refused() -> None:
    config = parse_config(CONFIG_YAML.format(summarize="true").replace(
        '"2100": "211000"', '"2100": "211000", "9000": "' + "9" * 21 + '", "9100": "91-00"'),
        Path("/nonexistent/ukg2d365.yaml"))
    m = Mapper(config.mapping)
    with pytest.raises(MappingError, match="longer than D365's 20 characters"):
        m.main_account("9000")
    with pytest.raises(MappingError, match=r"main account '91-00': contains the segment delimiter"):
        m.main_account("9100")


def test_bad_code_refuses_its_run_and_the_plan_names_every_bad_code() -> None:
    items = [gl("5000", Decimal("1.00"), cc="1-10", system_id=1), gl("5000", Decimal("1.00"), cc="B" * 31,
                                                                         system_id=2),
             gl("5000", Decimal("1.00"), cc="110", dept="A-B", system_id=3), gl("2100", 0, Decimal("3.00"),
                                                                                  system_id=4)]
    [journal] = build_journals([parse_gl_line(i, n) for n, i in enumerate(items, 1)], make_config())
    text = " ".join(journal.problems)
    assert not journal.postable
    assert "CostCenter contains the segment delimiter '-'; it would shift every segment: 1-10" in text
    assert f"CostCenter is longer than D365's 30 characters: {'B' * 31}" in text
    assert "Department contains the segment delimiter '-'; it would shift every segment: A-B" in text
    assert not any("-1-10-" in ln.account for ln in journal.lines)


# ---------------------------------------------------------------- round trip through the sandbox


@pytest.fixture
def world(sandbox, monkeypatch) -> World:
    return World(sandbox, monkeypatch)


@pytest.mark.e2e
def test_hostile_codes_are_created_by_sync_found_again_and_posted(world: World) -> None:
    dataset = world.sandbox.dataset
    dataset.add_org_level(1, "O'Neil Ave", "O'Neil Avenue store")
    dataset.add_org_level(1, "Zürich/2", "Zürich office 2")
    dataset.add_org_level(2, "R&D #1", "Research & development")
    dataset.add_org_level(1, "A-B", "a code holding the delimiter")
    dataset.add_org_level(1, "C" * 31, "a code too long for D365")
    first = world.json_events("sync-dimensions", expect=1)  # 1: two codes could not be created
    created = {(e["dimension"], e["value"]) for e in first if e["event"] == "dimension" and e["status"] == "created"}
    assert {("CostCenter", "O'Neil Ave"), ("CostCenter", "Zürich/2"), ("Department", "R&D #1")} <= created
    skipped = {e["code"]: e["reason"] for e in first if e.get("status") == "skipped"}
    assert "contains the segment delimiter '-'" in skipped["A-B"]
    assert "is longer than D365's 30 characters" in skipped["C" * 31]

    # D365 finds them again by key (path-encoded) and by $filter (quote-doubled): a second sync creates nothing.
    d365 = Context(load_config(world.config_path)).d365
    assert d365.get("FinancialDimensionValues", {"FinancialDimension": "CostCenter", "LegalEntityId": "",
                                                 "DimensionValue": "O'Neil Ave"}) is not None
    assert d365.get("OperatingUnits", {"OperatingUnitNumber": "R&D #1"}) is not None
    assert d365.get("OperatingUnits", {"OperatingUnitNumber": "R&D #2"}) is None
    second = world.json_events("sync-dimensions", expect=1)
    assert not [e for e in second if e.get("status") in ("to create", "created")]
    present = {e["value"] for e in second if e.get("status") == "present"}
    assert {"O'Neil Ave", "Zürich/2", "R&D #1"} <= present

    period = dataset.closed_periods()[-1].period_end
    make = dataset.make_gl_line
    dataset.add_gl_run("CODES1", period_end=period, lines=[
        make("CODES1", "5000", debit=Decimal("10.00"), cost_center="O'Neil Ave", department="R&D #1",
             period_end=period),
        make("CODES1", "5000", debit=Decimal("20.00"), cost_center="Zürich/2", department="PROD", period_end=period),
        make("CODES1", "2100", credit=Decimal("30.00"), period_end=period)])
    world.cli("post-payroll", "--run-id", "CODES1", "--yes")
    [journal] = [j for j in world.journals() if " CODES1 " in j["Description"]]
    accounts = {ln["AccountDisplayValue"]: Decimal(str(ln["DebitAmount"])) for ln in journal["lines"]}
    # the sandbox's ledger format: MainAccount-BusinessUnit-CostCenter-Project-Department-Region
    assert accounts["601500--O'Neil Ave--R&D #1-"] == Decimal("10.00")
    assert accounts["601500--Zürich/2--PROD-"] == Decimal("20.00")


@pytest.mark.e2e
def test_run_with_a_delimiter_or_overlong_code_is_refused_naming_it_while_others_post(world: World) -> None:
    world.create_missing_dimensions()
    period = world.sandbox.dataset.closed_periods()[-1].period_end
    make = world.sandbox.dataset.make_gl_line
    world.sandbox.dataset.add_gl_run("BADCODE", period_end=period, lines=[
        make("BADCODE", "5000", debit=Decimal("10.00"), cost_center="1-10", department="PROD", period_end=period),
        make("BADCODE", "5000", debit=Decimal("10.00"), cost_center="D" * 31, department="PROD", period_end=period),
        make("BADCODE", "2100", credit=Decimal("20.00"), period_end=period)])
    result = world.cli("post-payroll", "--due", "--yes", expect=1)
    assert "refusing UKG run BADCODE" in result.output
    assert "CostCenter contains the segment delimiter '-'; it would shift every segment: 1-10" in result.output
    assert f"CostCenter is longer than D365's 30 characters: {'D' * 31}" in result.output
    journals = world.journals()
    assert not [j for j in journals if " BADCODE " in j["Description"]]
    assert [j for j in journals if f" {world.latest_run().run_id} " in j["Description"]]


@pytest.mark.e2e
def test_code_that_looks_like_terminal_markup_is_shown_verbatim(world: World) -> None:
    world.create_missing_dimensions()
    period = world.sandbox.dataset.closed_periods()[-1].period_end
    make = world.sandbox.dataset.make_gl_line
    world.sandbox.dataset.add_gl_run("MARKUP", period_end=period, lines=[
        make("MARKUP", "5000", debit=Decimal("1.00"), cost_center="[/x]", department="[bold]PROD", period_end=period),
        make("MARKUP", "2100", credit=Decimal("1.00"), period_end=period)])
    result = world.cli("post-payroll", "--run-id", "MARKUP", "--yes", expect=1)
    assert "internal error" not in result.output and "Traceback" not in result.output
    assert "[/x]" in result.output and "[bold]PROD" in result.output
