"""The D365 simulator's rooms import one way: each only from the rooms before it, so there is no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import ukg2d365.sandbox.d365 as d365

ROOMS = ("schema", "errors", "values", "query", "store", "entities", "batch", "dmf", "service")
PACKAGE = "ukg2d365.sandbox.d365"


def _rooms_imported(room: str) -> set[str]:
    tree = ast.parse((Path(d365.__file__).parent / f"{room}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE + "."):
            found.add((node.module or "")[len(PACKAGE) + 1:])
        elif isinstance(node, ast.Import):
            found.update(a.name[len(PACKAGE) + 1:] for a in node.names if a.name.startswith(PACKAGE + "."))
    return found


def test_every_module_of_the_d365_package_is_a_listed_room() -> None:
    modules = {p.stem for p in Path(d365.__file__).parent.glob("*.py")} - {"__init__"}
    assert modules == set(ROOMS)


def test_each_d365_room_imports_only_rooms_before_it() -> None:
    backwards = {room: sorted(_rooms_imported(room) - set(ROOMS[:i])) for i, room in enumerate(ROOMS)}
    assert {room: names for room, names in backwards.items() if names} == {}


def test_the_d365_package_exports_the_service_and_its_state() -> None:
    assert d365.__all__ == ["D365Service", "D365State"]
    assert d365.D365Service.__module__ == f"{PACKAGE}.service"
    assert d365.D365State.__module__ == f"{PACKAGE}.store"
