"""Shared fixtures: a started local sandbox (HTTPS simulators of Entra ID, UKG Pro and D365 F&O)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ukg2d365.sandbox import Sandbox

# ledger_site (every ledger test once on SQLite, once on PostgreSQL) and pg_database.
pytest_plugins = ["tests.ledgers"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sandbox(**kwargs): Sandbox() keyword arguments for the sandbox fixture (employees=600, ...)"
    )


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A started sandbox (60 employees unless ``@pytest.mark.sandbox(employees=...)`` says otherwise)."""
    marker = request.node.get_closest_marker("sandbox")
    kwargs: dict[str, Any] = {"employees": 60}
    if marker is not None:
        kwargs.update(marker.kwargs)
    sb = Sandbox(tmp_path_factory.mktemp("sandbox"), **kwargs)
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def make_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes with custom Sandbox() arguments (port, token_lifetime, today, ...); stopped after the test."""
    started: list[Sandbox] = []

    def make(**kwargs: Any) -> Sandbox:
        kwargs.setdefault("employees", 60)
        sb = Sandbox(kwargs.pop("dir", None) or tmp_path_factory.mktemp("sandbox"), **kwargs)
        started.append(sb)
        return sb.start()

    yield make
    for sb in started:
        sb.stop()


@pytest.fixture
def sandbox_env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The sandbox's credential env vars, set for the test; returns them."""
    env = sandbox.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def world(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The sandbox with the tool's env set and D365's missing dimension values created (what most e2e tests need).

    Modules that need a bare sandbox world define their own ``world`` fixture, which takes precedence.
    """
    from tests.world import World

    w = World(sandbox, monkeypatch)
    w.create_missing_dimensions()
    return w
