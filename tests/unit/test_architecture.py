"""The import directions of the package: cli -> render, flows -> (d365, ukg, ledger, journal, mapping) -> http.

Read with ``ast`` from the source files (every import: top level, inside functions, under TYPE_CHECKING),
so a violation fails here before it turns into an import cycle at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ukg2d365"

# Rooms below the front ends: none of them may import the CLI or the rendering.
LOWER_ROOMS = ("flows", "d365", "ukg", "ledger", "journal", "mapping")
FRONT = ("ukg2d365.cli", "ukg2d365.render")
# The CLI hub every command module may import; the package __init__ assembles the modules and is exempt.
CLI_HUB = "ukg2d365.cli.app"
# `python -m ukg2d365` runs the CLI: the one module outside it that may import it.
ENTRY_POINTS = {"ukg2d365.__main__"}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, absolute; ``from a import b`` also yields ``a.b`` (b may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(files: dict[str, tuple[str, bool]]) -> list[str]:
    """The broken rules among ``files`` (module name -> (source, is_package)), one line each."""
    problems = []
    for module, (source, is_package) in sorted(files.items()):
        imports = imported_modules(source, module, is_package=is_package)
        room = module.split(".")[1] if "." in module else ""
        if room in LOWER_ROOMS:
            problems += [f"{module} imports {name}" for name in sorted(imports)
                         if any(_within(name, front) for front in FRONT)]
        if module in ENTRY_POINTS:
            continue
        if not _within(module, "ukg2d365.cli"):
            problems += [f"{module} imports {name} (only the CLI may)" for name in sorted(imports)
                         if _within(name, "ukg2d365.cli")]
        elif module != "ukg2d365.cli":
            problems += [f"{module} imports {name} (CLI modules meet only in {CLI_HUB})" for name in sorted(imports)
                         if _within(name, "ukg2d365.cli") and not _within(name, CLI_HUB) and name != module]
            if module == CLI_HUB:
                problems += [f"{module} imports {name} (the hub imports no command module)"
                             for name in sorted(imports) if _within(name, "ukg2d365.cli") and name != module]
    return problems


def package_files() -> dict[str, tuple[str, bool]]:
    return {module_name(path): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
            for path in PACKAGE.rglob("*.py")}


def test_the_package_keeps_its_import_directions() -> None:
    files = package_files()
    assert {"ukg2d365.cli.app", "ukg2d365.cli.payroll", "ukg2d365.render", "ukg2d365.flows.replay"} <= set(files)
    assert violations(files) == []


@pytest.mark.parametrize(("module", "source", "broken"), [
    ("ukg2d365.flows.replay", "from ukg2d365.render import Output\n", "ukg2d365.render"),
    ("ukg2d365.flows.replay", "def f():\n    from ukg2d365.cli.app import app\n", "ukg2d365.cli.app"),
    ("ukg2d365.d365.odata", "import ukg2d365.render.payroll\n", "ukg2d365.render.payroll"),
    ("ukg2d365.ledger", "from ukg2d365 import cli\n", "ukg2d365.cli"),
    ("ukg2d365.journal", "from .render import table\n", "ukg2d365.render"),
    ("ukg2d365.mapping", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ukg2d365.cli import app\n",
     "ukg2d365.cli"),
    ("ukg2d365.webhook", "from ukg2d365.cli.app import State\n", "ukg2d365.cli.app"),
    ("ukg2d365.sandbox.demo", "import ukg2d365.cli\n", "ukg2d365.cli"),
    ("ukg2d365.cli.sync", "from ukg2d365.cli.payroll import post_payroll\n", "ukg2d365.cli.payroll"),
    ("ukg2d365.cli.sync", "from ukg2d365.cli import app\n", "ukg2d365.cli"),
    ("ukg2d365.cli.sync", "from . import ledger\n", "ukg2d365.cli.ledger"),
    ("ukg2d365.cli.app", "from ukg2d365.cli import payroll\n", "ukg2d365.cli.payroll"),
])
def test_each_rule_catches_its_violation(module: str, source: str, broken: str) -> None:
    problems = violations({module: (source, False)})
    assert any(f"imports {broken}" in p for p in problems), problems


def test_the_allowed_directions_pass() -> None:
    allowed = {
        "ukg2d365.cli.sync": ("from ukg2d365.cli.app import app, command\nfrom ukg2d365.render import sync\n"
                              "from ukg2d365.flows import sync_dimensions\n", False),
        "ukg2d365.cli": ("from ukg2d365.cli import payroll, sync\nfrom ukg2d365.cli.app import app\n", True),
        "ukg2d365.render.payroll": ("from ukg2d365.journal import JournalPlan\n", False),
        "ukg2d365.flows.replay": ("from ukg2d365.ledger import Posting\nfrom .runtime import Context\n", False),
        "ukg2d365.__main__": ("from ukg2d365.cli import main\n", False),
    }
    assert violations(allowed) == []


def test_relative_imports_resolve_against_the_package() -> None:
    assert "ukg2d365.render" in imported_modules("from ..render import Output\n", "ukg2d365.flows.replay")
    assert "ukg2d365.cli.app" in imported_modules("from .app import app\n", "ukg2d365.cli", is_package=True)
