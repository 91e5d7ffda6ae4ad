"""The README's cron and systemd recipes, run as written: the lines are read from README.md itself (between
its ``<!-- recipe:NAME -->`` markers), so this test fails when the README drifts from what works.

They run in a scratch root: ``/var/lib/ukg2d365``, ``/etc/ukg2d365`` and ``/opt/ukg2d365/.venv/bin`` are mapped
into a temporary folder (and this checkout's venv), nothing else is changed. The service user is an existing
unprivileged account (``nobody``) when the test runs as root, so the recipe has to give that user what it needs
(its own secrets, master key and ledger, readable config); as another user, the recipe runs as that user. The
one line not run is ``useradd``: a test does not add accounts to the machine it runs on.

cron and systemd are emulated as they document themselves: crontab(5) runs each command with ``sh -c`` as the
named user, with HOME, LOGNAME and SHELL set and a minimal PATH, plus the file's ``NAME=value`` lines;
systemd.exec(5) runs each ``ExecStart=`` as ``User=`` in ``/`` with the ``Environment=`` lines, a ``-`` prefix
ignoring a failure, ``LoadCredential=`` files in ``$CREDENTIALS_DIRECTORY``, and ``OnFailure=`` units given
``$MONITOR_UNIT`` and ``$MONITOR_SERVICE_RESULT``.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.world import SECRETS
from ukg2d365.sandbox import Sandbox

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SERVICE_USER = "ukg2d365"
ALERT_TOKEN = "recipe-alert-token"
HEARTBEAT_TOKEN = "recipe-heartbeat-token"


def recipe(name: str) -> str:
    """The fenced block between ``<!-- recipe:NAME -->`` and ``<!-- /recipe -->`` in README.md."""
    match = re.search(rf"<!-- recipe:{name} -->\s*```\w*\n(.*?)```\s*<!-- /recipe -->", README.read_text(), re.S)
    assert match, f"README.md has no recipe:{name} block"
    return match.group(1)


def service_venv(root: Path) -> tuple[Path, pwd.struct_passwd]:
    """``/opt/ukg2d365/.venv`` in the scratch root, and the account that plays the service user.

    As root: a venv of a system Python of this version that ``nobody`` can run, seeing this checkout and its
    dependencies (a checkout's own interpreter often lives where nobody may enter, such as /root/.pyenv). When
    there is none, or not as root, the checkout's venv itself and the current user.
    """
    venv = root / "opt/ukg2d365/.venv"
    venv.parent.mkdir(parents=True)
    venv.parent.chmod(0o755)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        python = shutil.which(f"python{version}", path="/usr/local/bin:/usr/bin")
        if python and subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], timeout=120).returncode == 0:
            site = next(venv.glob("lib/python*/site-packages"))
            (site / "ukg2d365-checkout.pth").write_text(f"{next(Path(sys.prefix).glob('lib/python*/site-packages'))}"
                                                         f"\n{ROOT}\n")
            script = venv / "bin/ukg2d365"
            script.write_text(f"#!{venv}/bin/python\nimport sys\nfrom ukg2d365.cli import main\nsys.exit(main())\n")
            script.chmod(0o755)
            probe = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                                    "--", "sh", "-c", f"{script} --version"], capture_output=True, timeout=60)
            if probe.returncode == 0:
                return venv, nobody
            shutil.rmtree(venv)
    venv.symlink_to(Path(sys.prefix))
    return venv, pwd.getpwuid(os.geteuid())


@dataclass
class Machine:
    """The scratch root, the account playing the service user, and the alert and heartbeat receivers."""

    root: Path
    user: pwd.struct_passwd
    alerts: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def group(self) -> str:
        return grp.getgrgid(self.user.pw_gid).gr_name

    def map(self, text: str) -> str:
        """Recipe text with the machine's paths in the scratch root and the service user replaced."""
        text = text.replace("/opt/ukg2d365", f"{self.root}/opt/ukg2d365")
        text = text.replace("/var/lib/ukg2d365", f"{self.root}/var/lib/ukg2d365")
        text = text.replace("/etc/ukg2d365", f"{self.root}/etc/ukg2d365")
        name, group = self.user.pw_name, self.group
        text = re.sub(rf"(-u|-o|User=|^\S+ \S+ \S+ \S+ \S+) {SERVICE_USER}\b", rf"\1 {name}", text, flags=re.M)
        text = re.sub(rf"(User=){SERVICE_USER}\b", rf"\g<1>{name}", text)
        text = re.sub(rf"(-g|chgrp) {SERVICE_USER}\b", rf"\1 {group}", text)
        if not self.as_root:
            text = re.sub(r"runuser -u \S+ -- ", "", text)  # already that user
        return text

    def as_user(self, argv: list[str]) -> list[str]:
        if not self.as_root or self.user.pw_uid == 0:
            return argv
        return ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--clear-groups", "--", *argv]

    def base_env(self) -> dict[str, str]:
        """A clean environment: none of the sandbox's credentials that the test process holds."""
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class _Receiver(BaseHTTPRequestHandler):
    machine: Machine

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST":
            self.machine.alerts.append(json.loads(body))
        else:
            self.machine.heartbeats.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def machine(sandbox: Sandbox) -> Iterator[Machine]:
    """The scratch root after the README's set-up lines ran, its config pointing at the sandbox."""
    root = Path(tempfile.mkdtemp(prefix="ukg2d365-root-"))
    root.chmod(0o755)
    for folder in ("var/lib", "etc"):
        (root / folder).mkdir(parents=True)
        (root / folder).chmod(0o755)
    _, user = service_venv(root)
    m = Machine(root, user)
    handler = type("Handler", (_Receiver,), {"machine": m})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    m.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_setup(m, sandbox)
        write_config(m, sandbox)
        yield m
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(root, ignore_errors=True)


def run_setup(m: Machine, sandbox: Sandbox) -> None:
    """Each set-up line of the README, in order, as root (or the current user), with what its prompts ask."""
    env = sandbox.env()
    answers = {
        "credentials set ukg": "\n".join([env["UKG2D365_UKG_USERNAME"], env["UKG2D365_UKG_PASSWORD"],
                                          env["UKG2D365_UKG_CUSTOMER_API_KEY"],
                                          env.get("UKG2D365_UKG_USER_API_KEY", "")]) + "\n",
        "credentials set d365": env["UKG2D365_D365_CLIENT_SECRET"] + "\n",
        "credentials set notify": f"json://127.0.0.1:{m.port}/alerts/{ALERT_TOKEN}\n"
                                  f"http://127.0.0.1:{m.port}/ping/{HEARTBEAT_TOKEN}\n",
    }
    lines = [line for line in recipe("setup").splitlines() if line.strip() and not line.startswith("#")]
    assert any(line.startswith("useradd ") for line in lines)
    for line in lines:
        if line.startswith("useradd "):
            continue  # the service user is an existing unprivileged account (see the module docstring)
        stdin = next((text for command, text in answers.items() if line.endswith(command)), "")
        proc = subprocess.run(["sh", "-c", m.map(line)], input=stdin, capture_output=True, text=True, timeout=120,
                              env=m.base_env() | {"HOME": str(m.root)}, cwd=m.root)
        assert proc.returncode == 0, f"{line}\n{proc.stdout}{proc.stderr}"


def write_config(m: Machine, sandbox: Sandbox) -> None:
    """What the administrator edits into the file `init` wrote: the sandbox's tenant, and the recipe's ledger."""
    target = m.root / "etc/ukg2d365/ukg2d365.yaml"
    assert target.read_text().startswith("#"), "init wrote the commented example"
    shutil.copy(sandbox.ca_path, m.root / "etc/ukg2d365/ca.pem")
    (m.root / "etc/ukg2d365/ca.pem").chmod(0o644)
    data = sandbox.config_dict()
    for section in ("ukg", "d365"):
        data[section]["ca_bundle"] = "ca.pem"
    data.update(yaml.safe_load(m.map(recipe("config"))))
    with target.open("w") as fh:  # keeps the owner and mode the set-up lines gave it
        yaml.safe_dump(data, fh, sort_keys=False)


def add_unbalanced_run(sandbox: Sandbox) -> None:
    ds = sandbox.dataset
    period = ds.closed_periods()[-1].period_end
    ds.add_gl_run("UNBAL1", period_end=period, lines=[
        ds.make_gl_line("UNBAL1", "5000", debit=Decimal("10.00"), credit=Decimal("0"), period_end=period),
        ds.make_gl_line("UNBAL1", "2100", debit=Decimal("0"), credit=Decimal("9.00"), period_end=period),
    ])


def assert_state_belongs_to_the_service_user(m: Machine) -> None:
    state = m.root / "var/lib/ukg2d365"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700 and state.stat().st_uid == m.user.pw_uid
    for name in ("master.key", "credentials.enc", "ukg2d365.db"):
        info = (state / name).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (m.user.pw_uid, 0o600), name
    config = (m.root / "etc/ukg2d365/ukg2d365.yaml").stat()
    assert config.st_uid == os.geteuid() and stat.S_IMODE(config.st_mode) == 0o640


def assert_nothing_leaked(m: Machine, outputs: list[str]) -> None:
    text = "".join(outputs) + json.dumps(m.alerts)
    for secret in [ALERT_TOKEN, HEARTBEAT_TOKEN, *SECRETS]:
        assert secret not in text
    assert "Traceback" not in text


# ---------------------------------------------------------------------- cron


def parse_crontab(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """crontab(5) of /etc/cron.d: NAME=value lines, and (user, command) per schedule line."""
    env: dict[str, str] = {}
    jobs: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        if assignment:
            env[assignment.group(1)] = assignment.group(2)
            continue
        fields = line.split(None, 6)
        assert len(fields) == 7, f"not a cron.d line (5 time fields, user, command): {line}"
        jobs.append((fields[5], fields[6]))
    return env, jobs


def run_cron_job(m: Machine, env: dict[str, str], user: str, command: str) -> subprocess.CompletedProcess[str]:
    assert user == m.user.pw_name
    job_env = {"PATH": "/usr/bin:/bin", "HOME": m.user.pw_dir, "LOGNAME": user, "SHELL": "/bin/sh"}
    job_env |= {k: v for k, v in env.items() if k != "MAILTO"}  # MAILTO is cron's own
    return subprocess.run(m.as_user(["sh", "-c", command]), capture_output=True, text=True, timeout=300,
                          env=job_env, cwd="/")


def test_the_readme_cron_recipe_runs_as_written_quiet_on_success_alerting_a_refused_run(
    sandbox: Sandbox, machine: Machine
) -> None:
    add_unbalanced_run(sandbox)
    env, jobs = parse_crontab(machine.map(recipe("cron")))
    assert [command.split(None, 2)[-1] for _, command in jobs] == ["sync-dimensions", "sync-employees",
                                                                   "post-payroll --due"]
    results = [run_cron_job(machine, env, user, command) for user, command in jobs]
    outputs = [r.stdout + r.stderr for r in results]

    sync_dimensions, sync_employees, post_due = results
    assert (sync_dimensions.returncode, sync_dimensions.stdout, sync_dimensions.stderr) == (0, "", "")
    assert (sync_employees.returncode, sync_employees.stdout, sync_employees.stderr) == (0, "", "")
    assert machine.heartbeats == [f"/ping/{HEARTBEAT_TOKEN}"] * 2  # each success pinged the heartbeat

    # The refused pay run: exit 1, a few lines for cron to mail, one alert naming it and what to do next.
    assert post_due.returncode == 1, outputs[2]
    assert "refusing UKG run UNBAL1" in post_due.stderr
    [alert] = machine.alerts
    assert alert["title"].startswith("ukg2d365 post-payroll --due failed on ") and "(exit 1)" in alert["title"]
    assert "refusing UKG run UNBAL1" in alert["message"] and "next: `ukg2d365 status`" in alert["message"]
    assert len(machine.heartbeats) == 2
    journals = sandbox.d365.state.journals()
    assert journals, "the balanced runs of the due periods were posted"
    assert all("UNBAL1" not in json.dumps(j, default=str) for j in journals)

    assert_state_belongs_to_the_service_user(machine)
    assert_nothing_leaked(machine, outputs)

    # The next night: the sync steps stay silent and nothing is posted twice.
    again = [run_cron_job(machine, env, user, command) for user, command in jobs]
    assert [(r.returncode, r.stdout, r.stderr) for r in again[:2]] == [(0, "", "")] * 2
    assert len(journals) == len(sandbox.d365.state.journals())


# ---------------------------------------------------------------------- systemd


def parse_units(text: str) -> dict[str, list[tuple[str, str]]]:
    """The unit files of the block, split at their ``# /etc/systemd/system/NAME`` lines: (key, value) lines."""
    units: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        header = re.fullmatch(r"# /etc/systemd/system/(\S+)", line.strip())
        if header:
            current = units.setdefault(header.group(1), [])
        elif "=" in line and not line.startswith(("#", "[")) and current is not None:
            key, value = line.split("=", 1)
            current.append((key.strip(), value.strip()))
    return units


def run_unit(m: Machine, units: dict[str, list[tuple[str, str]]], name: str,
             extra_env: dict[str, str] | None = None) -> tuple[bool, list[subprocess.CompletedProcess[str]]]:
    """A Type=oneshot service as systemd runs it; True when it succeeded."""
    lines = units[name]
    user = pwd.getpwnam(next(v for k, v in lines if k == "User"))
    assert user.pw_uid == m.user.pw_uid
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "HOME": user.pw_dir, "USER": user.pw_name,
           "LOGNAME": user.pw_name, "SHELL": user.pw_shell, **(extra_env or {})}
    env |= dict(v.split("=", 1) for k, v in lines if k == "Environment")
    credentials = Path(tempfile.mkdtemp(prefix="credentials-", dir=m.root))
    for key, value in lines:
        if key == "LoadCredential":  # systemd (root) reads the file and hands the service a private copy
            credential, source = value.split(":", 1)
            copy = credentials / credential
            shutil.copy(source, copy)
            copy.chmod(0o400)
            if m.as_root:
                os.chown(copy, user.pw_uid, user.pw_gid)
    credentials.chmod(0o500)
    if m.as_root:
        os.chown(credentials, user.pw_uid, user.pw_gid)
    env["CREDENTIALS_DIRECTORY"] = str(credentials)
    results = []
    for key, value in lines:
        if key != "ExecStart":
            continue
        ignore_failure = value.startswith("-")
        proc = subprocess.run(m.as_user(["sh", "-c", value.lstrip("-")]), capture_output=True, text=True, timeout=300,
                              env=env, cwd="/")
        results.append(proc)
        if proc.returncode != 0 and not ignore_failure:
            return False, results
    return True, results


def test_the_readme_systemd_units_run_as_written_and_a_refused_run_fails_the_unit_and_alerts(
    sandbox: Sandbox, machine: Machine
) -> None:
    add_unbalanced_run(sandbox)
    units = parse_units(machine.map(recipe("systemd")))
    assert set(units) == {"ukg2d365.service", "ukg2d365-failed.service", "ukg2d365.timer"}
    service = dict(units["ukg2d365.service"])
    assert "SuccessExitStatus" not in service  # exit 1 (a refused pay run) is not a success
    assert service["OnFailure"] == "ukg2d365-failed.service"
    assert not any(k == "Environment" and "MASTER_KEY" in v for k, v in units["ukg2d365.service"])

    ok, results = run_unit(machine, units, "ukg2d365.service")
    assert [r.returncode for r in results] == [0, 0, 1]
    assert not ok
    assert machine.heartbeats == [f"/ping/{HEARTBEAT_TOKEN}"] * 2
    [run_alert] = machine.alerts
    assert "post-payroll --due failed" in run_alert["title"] and "refusing UKG run UNBAL1" in run_alert["message"]

    # What OnFailure= starts, with what systemd tells it about the failed unit.
    failed_ok, failed_results = run_unit(machine, units, "ukg2d365-failed.service", {
        "MONITOR_UNIT": "ukg2d365.service", "MONITOR_SERVICE_RESULT": "exit-code", "MONITOR_EXIT_CODE": "exited",
        "MONITOR_EXIT_STATUS": "1"})
    assert failed_ok, failed_results[-1].stdout + failed_results[-1].stderr
    unit_alert = machine.alerts[1]
    assert unit_alert["title"].startswith("ukg2d365: ukg2d365.service failed on ")
    assert "exit-code, exited, 1" in unit_alert["message"] and "journalctl -u ukg2d365.service" in unit_alert["message"]
    assert unit_alert["type"] == "failure"

    assert_state_belongs_to_the_service_user(machine)
    assert_nothing_leaked(machine, [r.stdout + r.stderr for r in results + failed_results])
