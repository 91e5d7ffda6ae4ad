"""`ukg2d365 init` and config discovery: a fresh machine gets a commented config from the package, and a
command finds it (or says where it looked) without --config."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ukg2d365.config as config_module
from ukg2d365.cli import app
from ukg2d365.config import example_config, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UKG2D365_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", str(tmp_path / "etc" / "ukg2d365" / "ukg2d365.yaml"))
    return tmp_path / "home"


def test_the_package_ships_the_commented_example_config() -> None:
    text = example_config()
    assert text == (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    assert "# " in text and "notify:" in text


def test_init_writes_the_example_to_the_user_config_private_and_refuses_to_overwrite(home: Path) -> None:
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    target = home / ".config" / "ukg2d365" / "config.yaml"
    assert target.read_text(encoding="utf-8") == example_config()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    target.write_text("# mine\n")
    again = CliRunner().invoke(app, ["init"])
    assert again.exit_code == 2 and "exists; nothing was written" in again.output
    assert target.read_text() == "# mine\n"
    forced = CliRunner().invoke(app, ["init", "--force"])
    assert forced.exit_code == 0 and target.read_text(encoding="utf-8") == example_config()


def test_init_path_writes_where_asked(tmp_path: Path, home: Path) -> None:
    target = tmp_path / "etc" / "ukg2d365" / "ukg2d365.yaml"
    result = CliRunner().invoke(app, ["init", "--path", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == example_config()


def test_discovery_order_is_cwd_then_user_then_system(tmp_path: Path, home: Path) -> None:
    system = Path(config_module.SYSTEM_CONFIG)
    user = home / ".config" / "ukg2d365" / "config.yaml"
    local = tmp_path / "ukg2d365.yaml"
    for path in (system, user, local):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(example_config())
    assert load_config().source_path == local.resolve()
    local.unlink()
    assert load_config().source_path == user.resolve()
    user.unlink()
    assert load_config().source_path == system.resolve()


def test_no_config_anywhere_says_where_it_looked(home: Path) -> None:
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "no config file: looked for ukg2d365.yaml, " in text
    assert f"{home}/.config/ukg2d365/config.yaml, {config_module.SYSTEM_CONFIG}" in text
    assert "`ukg2d365 init`" in text
