"""README.md cites the tests that prove each troubleshooting row: every citation must name a real test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_the_readme_cites_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    cited = set(re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", readme))
    assert cited, "README.md cites no tests: the pattern above no longer matches its citations"
    broken = []
    for path, name in sorted(cited):
        source = ROOT / path
        if not source.is_file():
            broken.append(path)
        elif name and not re.search(rf"^(?:async )?def {name}\(", source.read_text(encoding="utf-8"), re.M):
            broken.append(f"{path}::{name}")
    assert not broken, "README.md cites tests that do not exist: " + ", ".join(broken)


def test_the_readmes_systemd_units_put_comments_on_lines_of_their_own() -> None:
    """systemd.syntax(7): a comment is a line starting with # or ;. After a value it is part of the value, and
    `TimeoutStopSec=3600  # ...` is ignored ("Failed to parse time value", systemd-analyze verify): the worker was
    killed after the default 90 s instead of finishing its postings."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```ini\n(.*?)```", readme, re.S)
    assert blocks, "README.md has no systemd unit: the pattern above no longer matches"
    settings = [line for block in blocks for line in block.splitlines()
                if "=" in line and not line.lstrip().startswith(("#", ";"))]
    assert settings
    commented = [line for line in settings if re.search(r"\s#", line)]
    assert not commented, f"a comment after a value in a unit: {commented}"
