"""What ships: the licence, the example config inside the package, and a container image that runs as an
unprivileged user with its state in a volume, used the way README.md's container example shows. No Docker
engine runs here, so the Dockerfile is held to the README by reading both."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = "/var/lib/ukg2d365"


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def container_recipe() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- recipe:container -->\s*```sh\n(.*?)```", readme, re.S)
    assert match, "README.md has no recipe:container block"
    return [shlex.split(line) for line in match.group(1).splitlines() if line.strip()]


def test_the_image_runs_as_an_unprivileged_user_with_its_state_in_a_volume() -> None:
    instructions = dockerfile()
    [user] = [args for op, args in instructions if op == "USER"]
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    assert "--uid 10001" in next(args for op, args in instructions if op == "RUN" and "useradd" in args)
    assert ("VOLUME", STATE) in instructions
    assert ("ENTRYPOINT", '["ukg2d365"]') in instructions
    ops = [op for op, _ in instructions]
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN"), "nothing runs as root after USER"
    env = " ".join(args for op, args in instructions if op == "ENV")
    assert "UKG2D365_CONFIG=/etc/ukg2d365/ukg2d365.yaml" in env and f"UKG2D365_CREDENTIALS_FILE={STATE}/" in env


def test_the_readme_container_example_matches_the_image() -> None:
    build, volume, *runs = container_recipe()
    assert build[:3] == ["docker", "build", "-t"] and build[-1] == "."
    image = build[3]
    assert volume[:3] == ["docker", "volume", "create"]
    env = " ".join(args for op, args in dockerfile() if op == "ENV")
    config = re.search(r"UKG2D365_CONFIG=(\S+)", env).group(1)  # type: ignore[union-attr]
    from ukg2d365.cli import app

    commands = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback}
    for run in runs:
        assert run[:3] == ["docker", "run", "--rm"]
        mounts = [run[i + 1] for i, arg in enumerate(run) if arg == "-v"]
        assert f"{volume[3]}:{STATE}" in mounts  # the named volume on the image's VOLUME
        assert any(m.split(":")[1] == config and m.endswith(":ro") for m in mounts)  # where the image looks
        after_image = run[run.index(image) + 1:]
        assert after_image and after_image[0] in commands  # the entrypoint is the CLI: a command follows


def test_the_package_ships_a_licence_and_the_example_config() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) 2026 the ukg2d365 authors")
    project = (ROOT / "pyproject.toml").read_text()  # tomllib is 3.11+, this project runs on 3.10
    assert 'license = "MIT"' in project and 'license-files = ["LICENSE"]' in project
    assert re.search(r'\[tool\.setuptools\.package-data\]\n(#.*\n)*ukg2d365 = \["config\.example\.yaml"\]', project)
    shipped = ROOT / "ukg2d365" / "config.example.yaml"
    assert shipped.read_text() == (ROOT / "config.example.yaml").read_text()
