"""Alerts for unattended runs: one message per run that failed, refused something or warned, and a heartbeat.

Messages go through Apprise (mailto://, msteams://, slack://, json://, ... one library, many services). Their
URLs carry tokens, so they never come from the YAML file: ``UKG2D365_NOTIFY_URLS`` (separated by spaces,
commas or new lines) or the credential store (``ukg2d365 credentials set notify``). The heartbeat URL (a
dead man's switch such as healthchecks.io, pinged after each successful run so a run that never happens is
noticed too) likewise: ``notify.heartbeat_url`` names where it comes from, never the URL itself. A config with
``credentials.profile: acme`` reads its own, ``UKG2D365_ACME_NOTIFY_URLS`` or the profile's store entries, and
never the global ones: one customer's alerts never reach another's channel.

A URL is never printed, logged or audited: a delivery problem names the URL's position and scheme only.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from ukg2d365.config import Config, NotifyConfig, declared_profile, is_loopback, load_config
from ukg2d365.credentials import GLOBAL, CredentialScope, resolve_optional
from ukg2d365.errors import ConfigError, ExitStatus, Ukg2d365Error
from ukg2d365.http import HttpClient, RetryBudget, RetryPolicy

URLS_ENV = "UKG2D365_NOTIFY_URLS"
MAX_WARNINGS_IN_MESSAGE = 20
# Apprise logs each delivery, with URLs masked only partly; the library-logger convention (the logging HOWTO's
# "Configuring Logging for a Library") keeps its records off stderr: delivery problems are our own one line.
logging.getLogger("apprise").addHandler(logging.NullHandler())
logging.getLogger("apprise").propagate = False

MEANING = {
    int(ExitStatus.OK): "succeeded with warnings",
    int(ExitStatus.RECORDS_FAILED): "finished, but records failed or were refused (they are in the ledger)",
    int(ExitStatus.USAGE): "stopped: usage or configuration error, nothing was sent",
    int(ExitStatus.AUTH): "stopped: authentication or authorization failed",
    int(ExitStatus.UNAVAILABLE): "stopped: a remote system stayed unavailable",
    int(ExitStatus.INTERNAL): "stopped: internal error (a bug in ukg2d365)",
}


@dataclass(frozen=True)
class RunReport:
    """What one run said: its command, exit code, the error and warnings it printed, its summary line.

    A worker's job also names its ``tenant``, the tenant's ``config_path`` (every command the alert suggests
    then carries ``-c PATH``: the worker host serves many configs) and ``origin`` (when it was scheduled, by
    which worker). A CLI run given ``-c PATH`` names its ``config_path`` too, for the same reason.
    """

    command: str
    code: int
    error: str | None = None
    warnings: Sequence[str] = ()
    summary: str | None = None
    host: str = field(default_factory=socket.gethostname)
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    tenant: str | None = None
    config_path: Path | None = None
    origin: str | None = None
    verdict: str | None = None  # the title's word for what happened, when "failed" / "warned" would mislead

    @property
    def failed(self) -> bool:
        return self.code != int(ExitStatus.OK)

    @property
    def cli(self) -> str:
        """``ukg2d365``, or ``ukg2d365 -c PATH`` for a report that names its config."""
        return "ukg2d365" if self.config_path is None else f"ukg2d365 -c {shlex.quote(str(self.config_path))}"

    def wants_alert(self, cfg: NotifyConfig) -> bool:
        """A failure or refusal, or warnings when ``notify.on_warning``; never "another run holds the lock".

        75 is left out on purpose: the next run goes on, and a run that stays stuck stops the heartbeat.
        """
        if self.code == int(ExitStatus.LOCKED):
            return False
        return self.failed or (bool(self.warnings) and cfg.on_warning)


def next_step(report: RunReport, scope: CredentialScope = GLOBAL) -> str:
    """The command a person runs next, by exit code (a new secret goes to the run's credential profile)."""
    code, cli = report.code, report.cli
    audit = re.search(r"audit (run:\d+)", report.error or "")
    steps = {
        int(ExitStatus.OK): "the warnings above name the command for each",
        int(ExitStatus.RECORDS_FAILED): f"`{cli} status` lists what failed; fix what the lines above name, then "
                                        f"`{cli} replay --failed` (postings) or run "
                                        f"`{cli} {report.command}` again",
        int(ExitStatus.USAGE): f"fix the configuration or credential named above; `{cli} ping` checks the set-up",
        int(ExitStatus.AUTH): f"`{cli} ping` names what is refused; store a new secret with "
                              f"`{scope.set_command('ukg')}` (or d365)",
        int(ExitStatus.UNAVAILABLE): "nothing if it passes: the next scheduled run retries and recovers postings in "
                                     f"flight; `{cli} ping` shows whether the systems answer",
        int(ExitStatus.INTERNAL): "report the bug with the output of "
                                  f"`{cli} audit {audit.group(1) if audit else 'run:N'}`",
    }
    return steps.get(code, f"`{cli} status`, then run `{cli} {report.command}` again")


def compose(report: RunReport, scope: CredentialScope = GLOBAL) -> tuple[str, str]:
    """The title and body of the alert for one run (a worker's job names its tenant and config too)."""
    verdict = report.verdict or ("failed" if report.failed else "warned")
    tenant = f" for tenant {report.tenant}" if report.tenant else ""
    title = f"ukg2d365 {report.command} {verdict}{tenant} on {report.host} (exit {report.code})"
    what = report.command
    if report.tenant:
        what += f" of tenant {report.tenant}" + (f" ({report.config_path})" if report.config_path else "")
    if report.origin:
        what += f", {report.origin},"
    lines = [f"{what} on {report.host} at {report.at.isoformat(timespec='seconds')}: exit {report.code}, "
             f"{MEANING.get(report.code, 'failed')}"]
    if report.error:
        lines.append(f"error: {report.error}")
    shown = list(report.warnings[:MAX_WARNINGS_IN_MESSAGE])
    lines += [f"warning: {w}" for w in shown]
    if len(report.warnings) > len(shown):
        lines.append(f"... and {len(report.warnings) - len(shown)} more warning(s): `{report.cli} status` has them")
    if report.summary:
        lines.append(f"summary: {report.summary}")
    lines.append(f"next: {next_step(report, scope)}")
    return title, "\n".join(lines)


# ---------------------------------------------------------------------- where the URLs come from


def split_urls(text: str | None) -> list[str]:
    return [u for u in re.split(r"[\s,]+", text or "") if u]


def notify_urls(environ: Mapping[str, str] | None = None, scope: CredentialScope = GLOBAL) -> list[str]:
    """The Apprise URLs: ``UKG2D365_NOTIFY_URLS``, else the credential store's ``notify.urls``; [] when neither.

    With a credential profile, that profile's variable (``UKG2D365_ACME_NOTIFY_URLS``) and store entry only.
    """
    return split_urls(resolve_optional("notify", "urls", environ=environ, scope=scope))


def heartbeat_url(cfg: NotifyConfig, environ: Mapping[str, str] | None = None,
                  scope: CredentialScope = GLOBAL) -> str | None:
    """The heartbeat URL that ``notify.heartbeat_url`` refers to (in the scope's credentials), or None."""
    reference = cfg.heartbeat_url
    if reference is None:
        return None
    if reference.startswith("env:"):
        # The variable the config itself names: explicit, so it is the config's own whatever its profile.
        value = (os.environ if environ is None else environ).get(reference[4:]) or None
    else:
        value = resolve_optional("notify", "heartbeat_url", environ=environ, scope=scope)
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))):
        raise ConfigError(f"the heartbeat URL from notify.heartbeat_url ({reference}) is not an https:// URL",
                          hint="heartbeat URLs carry a token: plain http only for loopback")
    return value.strip()


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "?"


# ---------------------------------------------------------------------- sending


class Notifier:
    """Sends alerts to Apprise URLs and pings the heartbeat; returns problems as lines, never raises."""

    def __init__(self, cfg: NotifyConfig, urls: Sequence[str], heartbeat: str | None,
                 scope: CredentialScope = GLOBAL) -> None:
        self.cfg = cfg
        self.urls = list(urls)
        self.heartbeat = heartbeat
        self.scope = scope

    def where_urls_come_from(self) -> str:
        """Where the URLs are set, in this scope: ``UKG2D365_NOTIFY_URLS or run `ukg2d365 credentials set notify```."""
        return f"{self.scope.env_var('notify', 'urls')} or run `{self.scope.set_command('notify')}`"

    def send(self, title: str, body: str, *, failure: bool = True) -> list[str]:
        """One message to every URL; the lines say which URL (by position and scheme) did not take it."""
        import apprise

        problems = []
        asset = apprise.AppriseAsset(storage_mode="memory", secure_logging=True)
        kind = apprise.NotifyType.FAILURE if failure else apprise.NotifyType.INFO
        for number, url in enumerate(self.urls, start=1):
            where = f"notification URL {number} of {len(self.urls)} ({_scheme(url)})"
            client = apprise.Apprise(asset=asset)
            if not client.add(url):
                problems.append(f"{where} is not a URL Apprise understands; check {self.where_urls_come_from()}")
                continue
            try:
                delivered = bool(client.notify(body=body, title=title, notify_type=kind))
            except Exception as exc:  # noqa: BLE001 - a plugin's failure must not turn a run's exit code into 70
                problems.append(f"{where} failed ({type(exc).__name__})")
                continue
            if not delivered:
                problems.append(f"{where} did not accept the alert")
        return problems

    def report(self, report: RunReport) -> list[str]:
        """After a run: the alert when it wants one, the heartbeat when it succeeded; problems as lines."""
        problems: list[str] = []
        if report.wants_alert(self.cfg) and self.urls:
            title, body = compose(report, self.scope)
            problems += self.send(title, body, failure=report.failed)
        if report.code == int(ExitStatus.OK) and self.heartbeat:
            problem = self.ping_heartbeat()
            if problem:
                problems.append(problem)
        return problems

    def ping_heartbeat(self) -> str | None:
        """GET the heartbeat URL (through http.py: timeouts, TLS, Retry-After, a bound); a problem line or None."""
        assert self.heartbeat is not None
        host = urlsplit(self.heartbeat).hostname or "?"
        policy = RetryPolicy(max_attempts=3, backoff_base=1.0, backoff_max=5.0, max_retry_after=10.0,
                             budget_seconds=self.cfg.timeout_seconds)
        parts = urlsplit(self.heartbeat)
        client = HttpClient(system="heartbeat", base_url=f"{parts.scheme}://{parts.netloc}",
                            timeout=self.cfg.timeout_seconds, ca_bundle=None, policy=policy,
                            budget=RetryBudget(policy.budget_seconds))
        try:
            response = client.request("GET", self.heartbeat)
        except Ukg2d365Error as exc:
            # The message names the URL's path, which holds the heartbeat's token: only its kind is shown.
            return f"heartbeat to {host} failed ({type(exc).__name__})"
        finally:
            client.session.close()
        if not 200 <= response.status_code < 300:
            return f"heartbeat to {host} answered HTTP {response.status_code}"
        return None


def notifier(cfg: NotifyConfig, environ: Mapping[str, str] | None = None, *,
             scope: CredentialScope = GLOBAL) -> Notifier:
    """The notifier for this run, its URLs and heartbeat resolved from the scope's environment or store."""
    return Notifier(cfg, notify_urls(environ, scope), heartbeat_url(cfg, environ, scope), scope)


# ---------------------------------------------------------------------- after a run: the one decision


def after_run(report: RunReport, config_path: Path | None, *, config: Config | None = None,
              environ: Mapping[str, str] | None = None) -> list[str]:
    """What every front end (a CLI run, a worker's job) does when a recorded run ends; problems as lines.

    The alert when the run failed, refused something or warned, the heartbeat when it succeeded, through the
    channel of the config's credential profile (or the global one). A config that does not load is exactly what
    the alert must report: it goes to the profile the file names, if it names one. Never raises: alerting never
    changes a run's exit code nor stops a worker.
    """
    try:
        try:
            loaded = config if config is not None else load_config(config_path)
            cfg, scope = loaded.notify, CredentialScope.of(loaded)
        except Ukg2d365Error:
            cfg, scope = NotifyConfig(), CredentialScope(declared_profile(config_path), config_path)
        return notifier(cfg, environ, scope=scope).report(report)
    except Ukg2d365Error as exc:
        return [f"cannot send alerts: {exc}"]
    except Exception as exc:  # noqa: BLE001 - a plugin's message may hold a URL: its class name only
        return [f"cannot send alerts: {type(exc).__name__}"]
