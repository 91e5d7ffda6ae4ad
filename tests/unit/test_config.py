from pathlib import Path

import pytest

from ukg2d365.config import load_config, parse_config
from ukg2d365.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid():
    cfg = load_config(ROOT / "config.example.yaml")
    assert cfg.mapping.ledger_format is None  # D365 decides; the guard is optional
    assert cfg.mapping.dimensions["Department"].operating_unit_type == "OMDepartment"


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


BASE = (ROOT / "config.example.yaml").read_text()


def test_unknown_key_named_with_path_and_line(tmp_path):
    text = BASE.replace("  journal_name: GenJrn", "  journal_nam: GenJrn")
    line = text.splitlines().index(next(s for s in text.splitlines() if "journal_nam:" in s)) + 1
    with pytest.raises(ConfigError, match=rf"line {line}: d365.journal_nam: unknown key"):
        load_config(write(tmp_path, text))


def test_wrong_type_named(tmp_path):
    with pytest.raises(ConfigError, match=r"d365.batch_size"):
        load_config(write(tmp_path, BASE.replace("batch_size: 500", "batch_size: lots")))


def test_missing_required_key(tmp_path):
    with pytest.raises(ConfigError, match=r"d365.tenant_id: required key is missing"):
        load_config(write(tmp_path, "\n".join(ln for ln in BASE.splitlines() if "tenant_id" not in ln)))


def test_a_config_for_gl_export_files_only_needs_no_ukg_section_and_names_ukg_base_url_when_the_api_is_asked(
        tmp_path):
    import yaml

    data = yaml.safe_load(BASE)
    del data["ukg"]
    cfg = load_config(write(tmp_path, yaml.safe_dump(data)))
    assert cfg.ukg.base_url is None and cfg.ukg.company_ids == []
    with pytest.raises(ConfigError, match=r"c.yaml: ukg.base_url is not set, and this command reads the UKG API"):
        cfg.ukg_api_url()
    assert load_config(ROOT / "config.example.yaml").ukg_api_url() == "https://service4.ultipro.com"


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_duplicate_key_refused(tmp_path):
    with pytest.raises(ConfigError, match="duplicate key 'currency'"):
        load_config(write(tmp_path, BASE.replace("  currency: USD", "  currency: USD\n  currency: EUR")))


def test_bad_yaml_reports_line(tmp_path):
    with pytest.raises(ConfigError, match=r"line \d+: not valid YAML"):
        load_config(write(tmp_path, "ukg:\n  base_url: [unclosed\n"))


def test_unquoted_account_numbers_refused(tmp_path):
    with pytest.raises(ConfigError, match="must be a quoted string"):
        load_config(write(tmp_path, BASE.replace('"5000": "601500"', '5000: 601500')))


def test_plain_http_refused_except_loopback(tmp_path):
    with pytest.raises(ConfigError, match="https"):
        load_config(write(tmp_path, BASE.replace("https://service4.ultipro.com", "http://service4.ultipro.com")))
    load_config(write(tmp_path, BASE.replace("https://service4.ultipro.com", "http://127.0.0.1:9000")))


def test_relative_paths_resolve_against_config_folder(tmp_path):
    cfg = parse_config(BASE, tmp_path / "sub" / "c.yaml")
    assert cfg.ledger_path == (tmp_path / "sub" / "ukg2d365.db").resolve()


def test_empty_file(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        load_config(write(tmp_path, ""))
