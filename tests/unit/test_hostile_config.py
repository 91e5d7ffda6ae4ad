"""Malformed configuration files: exit 2, the file (and key path) named, no traceback, nothing sent.

Every case runs the real CLI (`post-payroll --due --yes`, the cron command) against a started sandbox with the
sandbox's credentials in the environment, so a config that were wrongly accepted would reach the simulators
and show up in their request counters.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ukg2d365.cli import app
from ukg2d365.sandbox import Sandbox

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def sandbox_mod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = Sandbox(tmp_path_factory.mktemp("config-sandbox"), employees=10)
    sb.start()
    yield sb
    sb.stop()


@pytest.fixture
def base(sandbox_mod: Sandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name, value in sandbox_mod.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("UKG2D365_CONFIG", raising=False)
    data = yaml.safe_load(sandbox_mod.config_path.read_text())
    for section in ("ukg", "d365"):
        data[section]["ca_bundle"] = str(sandbox_mod.ca_path)
    return data


def run_cli(sandbox: Sandbox, config: Path, *command: str) -> tuple[int, str]:
    before = sandbox.stats()
    result = CliRunner().invoke(app, ["-c", str(config), *(command or ("post-payroll", "--due", "--yes"))])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert sandbox.stats() == before, "a request was sent with a broken config"
    return result.exit_code, result.output


def write(tmp_path: Path, data: dict[str, Any] | None = None, text: str | None = None) -> Path:
    path = tmp_path / "ukg2d365.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_the_unmodified_config_is_accepted(tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox) -> None:
    result = CliRunner().invoke(app, ["-c", str(write(tmp_path, base)), "post-payroll", "--due", "--dry-run"])
    assert result.exit_code in (0, 1), result.output  # the baseline the broken variants start from works


# ---------------------------------------------------------------- structural edits of a valid config


def _set(path: str, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return edit


def _drop(path: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node[p]
        del node[last]
    return edit


CASES: list[tuple[str, Edit, str]] = [
    ("wrong type: integer", _set("d365.batch_size", "lots"),
     "d365.batch_size: Input should be a valid integer"),
    ("wrong type: out of range", _set("d365.batch_size", 0), "d365.batch_size: Input should be greater than or equal"),
    ("wrong type: list", _set("ukg.pay_groups", "BW"), "ukg.pay_groups: Input should be a valid list"),
    ("wrong type: section", _set("d365", "contoso"), "d365: Input should be a valid dictionary"),
    ("wrong type: bool for text", _set("d365.legal_entity", True), "d365.legal_entity: Input should be a valid string"),
    ("unknown key", _set("d365.legal_entty", "usmf"), "d365.legal_entty: unknown key"),
    ("unknown section", _set("ledgr", {"path": "x.db"}), "ledgr: unknown key"),
    ("missing key", _drop("d365.tenant_id"), "d365.tenant_id: required key is missing"),
    ("missing section", _drop("mapping"), "mapping: required key is missing"),
    ("empty mapping", _set("mapping", {}), "mapping: main_accounts is empty"),
    ("null mapping", _set("mapping", None), "mapping: Input should be a valid dictionary"),
    ("empty main_accounts", _set("mapping.main_accounts", {}), "mapping: main_accounts is empty"),
    ("empty ledger_format guard", _set("mapping.ledger_format", []), "ledger_format must start with MainAccount"),
    ("ledger_format guard twice", _set("mapping.ledger_format", ["MainAccount", "CostCenter", "CostCenter"]),
     "ledger_format lists a dimension twice"),
    ("unquoted constant", _set("mapping.dimensions.BusinessUnit", {"value": 1}),
     "mapping.dimensions.BusinessUnit.value: 1 must be a quoted string"),
    ("constant and source", _set("mapping.dimensions.BusinessUnit", {"value": "001", "source": "orgLevel3"}),
     "mapping.dimensions.BusinessUnit: give either source"),
    ("neither constant nor source", _set("mapping.dimensions.BusinessUnit", {}),
     "mapping.dimensions.BusinessUnit: give either source"),
    ("constant with the delimiter", _set("mapping.dimensions.BusinessUnit", {"value": "0-1"}),
     "dimensions.BusinessUnit: value '0-1' contains the segment delimiter '-'"),
    ("constant too long", _set("mapping.dimensions.BusinessUnit", {"value": "X" * 31}),
     "is longer than D365's 30 characters"),
    ("default_dimensions with MainAccount", _set("employees.default_dimensions", ["MainAccount"]),
     "employees.default_dimensions: names MainAccount"),
    ("unquoted account numbers", _set("mapping.main_accounts", {5000: 601500}),
     "mapping.main_accounts: key 5000 must be a quoted string"),
    ("bad delimiter", _set("mapping.delimiter", "/"), "mapping.delimiter: must be one of"),
    ("bad enum", _set("payroll.negative_amounts", "ignore"),
     "payroll.negative_amounts: Input should be 'reverse' or 'refuse'"),
    ("bad line_text placeholder", _set("payroll.line_text", "Payroll {employee}"),
     "payroll.line_text: unknown placeholder 'employee'"),
    ("plain http", _set("ukg.base_url", "http://service4.ultipro.com"),
     "ukg.base_url: must be an https:// URL (plain http only for loopback)"),
    ("no scheme", _set("d365.base_url", "contoso.operations.dynamics.com"), "d365.base_url: must be an https:// URL"),
    ("http authority", _set("d365.authority_host", "http://login.microsoftonline.com"),
     "d365.authority_host: must be an https:// URL"),
]


@pytest.mark.parametrize("edit,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_value_exits_2_naming_file_line_and_key_path(
    tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox, edit: Edit, expected: str
) -> None:
    edit(base)
    config = write(tmp_path, base)
    code, output = run_cli(sandbox_mod, config)
    assert code == 2, output
    assert f"error: {config}:" in output
    assert expected in output
    if expected != "mapping: required key is missing":  # a key that is absent has no line to point at
        assert re.search(rf"error: {re.escape(str(config))}: line \d+: ", output), output
    assert not (tmp_path / "ukg2d365.db").exists()  # not even the ledger was touched


# ---------------------------------------------------------------- files that are not a valid YAML mapping


def _dup_account(text: str) -> str:
    return text.replace("    '5000': '601500'\n", "    '5000': '601500'\n    '5000': '601510'\n", 1)


TEXT_CASES: list[tuple[str, Callable[[str], str], str]] = [
    ("bad YAML", lambda t: t + "extra: [unclosed\n", "not valid YAML"),
    ("tab indentation", lambda t: t.replace("\n  base_url", "\n\tbase_url", 1), "not valid YAML"),
    ("duplicate key", _dup_account, "not valid YAML: duplicate key '5000' (first at line"),
    ("duplicate section", lambda t: t + "ukg:\n  base_url: https://other.example.com\n",
     "not valid YAML: duplicate key 'ukg' (first at line"),
    ("python object tag", lambda t: t + "x: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ("empty file", lambda t: "", "the file is empty"),
    ("only a comment", lambda t: "# nothing here\n", "the file is empty"),
    ("top-level list", lambda t: "- ukg\n- d365\n", "the top level must be a mapping of sections"),
    ("top-level scalar", lambda t: "ukg2d365\n", "the top level must be a mapping of sections"),
    ("deeply nested", lambda t: "ukg: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    ("billion laughs", lambda t: "\n".join(
        ["bombs:", '  l0: &l0 ["lol"]'] + [f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]"
                                           for i in range(1, 12)]) + "\n" + t.replace("pay_groups:", "company_ids: "
                                                                                      "[*l11]\n  pay_groups:", 1),
     "ukg.company_ids.0: Input should be a valid string"),
]


@pytest.mark.parametrize("change,expected", [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_malformed_file_exits_2_naming_it(
    tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox, change: Callable[[str], str], expected: str
) -> None:
    config = write(tmp_path, text=change(yaml.safe_dump(base, sort_keys=False)))
    code, output = run_cli(sandbox_mod, config)
    assert code == 2, output
    assert f"error: {config}" in output
    assert expected in output


def test_unreadable_files_exit_2_naming_them(tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox) -> None:
    missing = tmp_path / "nope.yaml"
    code, output = run_cli(sandbox_mod, missing)
    assert code == 2 and f"error: {missing}: config file not found (pass --config PATH" in output
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    code, output = run_cli(sandbox_mod, folder)
    assert code == 2 and f"error: {folder}: cannot read config file" in output
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(yaml.safe_dump(base).encode() + "# Zürich\n".encode("latin-1"))
    code, output = run_cli(sandbox_mod, latin1)
    assert code == 2 and f"error: {latin1}: cannot read config file" in output and "utf-8" in output


@pytest.mark.parametrize("command", [("ping",), ("sync-dimensions",), ("replay", "--failed"),
                                     ("post-payroll", "--run-id", "X", "--dry-run")])
def test_every_command_refuses_a_broken_config_the_same_way(
    tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox, command: tuple[str, ...]
) -> None:
    base["d365"]["legal_entty"] = "usmf"
    config = write(tmp_path, base)
    code, output = run_cli(sandbox_mod, config, *command)
    assert code == 2 and "d365.legal_entty: unknown key" in output


# ---------------------------------------------------------------- paths inside the config


def test_ledger_in_a_missing_folder_exits_2_naming_the_path(
    tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox
) -> None:
    base["ledger"] = {"path": "missing/sub/ukg2d365.db"}
    code, output = run_cli(sandbox_mod, write(tmp_path, base))
    assert code == 2, output
    assert f"ledger.path {tmp_path}/missing/sub/ukg2d365.db: folder {tmp_path}/missing/sub does not exist" in output


def test_ledger_path_that_is_a_folder_or_under_a_file_exits_2(
    tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox
) -> None:
    (tmp_path / "afile").write_text("not a folder")
    base["ledger"] = {"path": "afile/ukg2d365.db"}
    code, output = run_cli(sandbox_mod, write(tmp_path, base))
    assert code == 2 and f"{tmp_path}/afile is not a folder" in output, output
    (tmp_path / "adir").mkdir()
    base["ledger"] = {"path": "adir"}
    code, output = run_cli(sandbox_mod, write(tmp_path, base))
    assert code == 2 and f"ledger.path {tmp_path}/adir is a folder, not a file" in output, output


def test_ledger_that_is_not_a_sqlite_file_exits_2(tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox) -> None:
    (tmp_path / "notes.db").write_text("these are my notes, not a ledger\n" * 100)
    base["ledger"] = {"path": "notes.db"}
    code, output = run_cli(sandbox_mod, write(tmp_path, base))
    assert code == 2 and f"ledger.path {tmp_path}/notes.db: not a usable SQLite ledger" in output, output


def _make_read_only(folder: Path) -> Callable[[], None]:
    """chmod for ordinary users; root ignores mode bits, so root gets the immutable attribute instead."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr: cannot make a folder read-only")
    return lambda: subprocess.run([chattr, "-i", str(folder)], check=True)


def test_ledger_in_a_read_only_folder_exits_2_naming_it(
    tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    base["ledger"] = {"path": "ro/ukg2d365.db"}
    config = write(tmp_path, base)
    undo = _make_read_only(folder)
    try:
        code, output = run_cli(sandbox_mod, config)
    finally:
        undo()
    assert code == 2, output
    assert f"ledger.path {folder}/ukg2d365.db: folder {folder} is not writable" in output


def test_ledger_that_cannot_be_created_exits_2_naming_it(
    tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only mount or an ACL passes os.access but refuses the create itself.
    real_open = os.open

    def refusing_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("ukg2d365.db"):
            raise OSError(30, "Read-only file system")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    code, output = run_cli(sandbox_mod, write(tmp_path, base))
    assert code == 2, output
    assert f"ledger.path {tmp_path}/ukg2d365.db: cannot create or open it (Read-only file system)" in output


def test_missing_ca_bundle_exits_2_before_any_request(
    tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox
) -> None:
    base["ukg"]["ca_bundle"] = "corporate-proxy.pem"
    code, output = run_cli(sandbox_mod, write(tmp_path, base))
    assert code == 2, output
    assert f"ukg.ca_bundle: CA bundle {tmp_path}/corporate-proxy.pem does not exist" in output



def test_key_that_looks_like_terminal_markup_is_reported_verbatim(
    tmp_path: Path, base: dict[str, Any], sandbox_mod: Sandbox
) -> None:
    base["d365"]["[/x]"] = 1
    code, output = run_cli(sandbox_mod, write(tmp_path, base))
    assert code == 2 and "d365.[/x]: unknown key" in output
