"""legal_entities, payroll.posting_date/document_date and accruals: what the file may say, and the one-line
errors that name the key and line when it says something else."""

from pathlib import Path

import pytest

from ukg2d365.config import load_config
from ukg2d365.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BASE = (ROOT / "config.example.yaml").read_text()

ENTITIES = """
legal_entities:
  by_company: {"UWLN6": "USMF", "ACME2": "USPI"}
  by_dimension:
    dimension: CostCenter
    values: {"1200": "USPM"}
  intercompany:
    due_from_account: "133100"
    due_to_account: "233100"
"""

ACCRUALS = """
accruals:
  basis: workdays
  accounts: ["5000", "5010"]
  liability_account: "211900"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), start=1) if needle in ln)


def test_without_legal_entities_every_company_is_paid_by_d365_legal_entity(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.legal_entities is None
    assert cfg.entity_of_company("ANY") == cfg.d365.legal_entity


def test_legal_entities_section_maps_companies_and_names_every_entity(tmp_path):
    cfg = load_config(write(tmp_path, BASE + ENTITIES))
    assert cfg.entity_of_company("ACME2") == "USPI"
    assert cfg.entity_of_company("OTHER") is None
    assert cfg.legal_entities is not None
    assert cfg.legal_entities.entities() == {"USMF", "USPI", "USPM"}
    assert cfg.legal_entities.intercompany is not None
    assert cfg.legal_entities.intercompany.dimensions == {}


def test_by_dimension_without_intercompany_accounts_is_refused(tmp_path):
    text = BASE + ENTITIES.split("  intercompany:")[0]
    with pytest.raises(ConfigError, match=r"legal_entities: by_dimension moves lines .* needs intercompany"):
        load_config(write(tmp_path, text))


def test_by_dimension_on_an_unmapped_dimension_names_key_and_line(tmp_path):
    text = BASE + ENTITIES.replace("dimension: CostCenter", "dimension: Plant")
    line = line_of(text, "dimension: Plant")
    with pytest.raises(ConfigError, match=rf"line {line}: legal_entities.by_dimension.dimension: Plant is not in "
                                          r"mapping.dimensions \(CostCenter, Department\)"):
        load_config(write(tmp_path, text))


def test_intercompany_dimension_must_be_mapped(tmp_path):
    text = BASE + ENTITIES + '    dimensions: {"Region": "IC"}\n'
    with pytest.raises(ConfigError, match=r"legal_entities.intercompany.dimensions.Region: not in mapping"):
        load_config(write(tmp_path, text))


def test_intercompany_dimension_constant_is_accepted(tmp_path):
    cfg = load_config(write(tmp_path, BASE + ENTITIES + '    dimensions: {"CostCenter": "IC"}\n'))
    assert cfg.legal_entities and cfg.legal_entities.intercompany
    assert cfg.legal_entities.intercompany.dimensions == {"CostCenter": "IC"}


@pytest.mark.parametrize(("change", "message"), [
    (('"ACME2": "USPI"', '"ACME2": "USPIXX"'), r"legal_entities.by_company: company 'ACME2': 'USPIXX' is not a D365 "
                                               r"legal entity id"),
    (('"1200": "USPM"', '1200: "USPM"'), r"legal_entities.by_dimension.values: key 1200 must be a quoted string"),
    (('due_to_account: "233100"', "due_to_account: 233100"), r"due_to_account: 233100 must be a quoted string"),
    (('by_company: {"UWLN6": "USMF", "ACME2": "USPI"}', "by_company: {}"), r"by_company: is empty"),
    (('due_from_account: "133100"', 'due_from_acount: "133100"'), r"due_from_acount: unknown key"),
])
def test_malformed_legal_entities_are_refused_naming_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, BASE + ENTITIES.replace(*change)))


def test_posting_and_document_date_choices(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.payroll.posting_date == "period_end"
    assert cfg.payroll.document_date is None
    text = BASE.replace("  posting_date: period_end", "  posting_date: pay_date\n  document_date: period_end")
    cfg = load_config(write(tmp_path, text))
    assert (cfg.payroll.posting_date, cfg.payroll.document_date) == ("pay_date", "period_end")
    bad = BASE.replace("  posting_date: period_end", "  posting_date: paid")
    with pytest.raises(ConfigError, match=rf"line {line_of(bad, 'posting_date')}: payroll.posting_date: Input "
                                          r"should be 'period_end' or 'pay_date'"):
        load_config(write(tmp_path, bad))


def test_accruals_section(tmp_path):
    cfg = load_config(write(tmp_path, BASE + ACCRUALS))
    assert cfg.accruals is not None
    assert cfg.accruals.basis == "workdays"
    assert cfg.accruals.weekday_numbers == frozenset(range(5))
    assert cfg.accruals.accounts == ["5000", "5010"]


@pytest.mark.parametrize(("change", "message"), [
    (("basis: workdays", "basis: hours"), r"accruals.basis: Input should be 'calendar_days' or 'workdays'"),
    (('accounts: ["5000", "5010"]', "accounts: [5000]"), r"accruals.accounts: 5000 must be a quoted string"),
    (('accounts: ["5000", "5010"]', "accounts: []"), r"accruals.accounts: is empty"),
    (('liability_account: "211900"', "liability_account: 211900"), r"liability_account: 211900 must be a quoted"),
    (('liability_account: "211900"', ""), r"accruals.liability_account: required key is missing"),
    (("basis: workdays", "basis: workdays\n  workdays: [Mon, Funday]"), r"accruals.workdays.1: Input should be"),
    (("basis: workdays", 'basis: workdays\n  line_text: "Accrual {employee}"'), r"unknown placeholder 'employee'"),
])
def test_malformed_accruals_are_refused_naming_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, BASE + ACCRUALS.replace(*change)))
