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
