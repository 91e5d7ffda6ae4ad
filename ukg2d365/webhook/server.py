"""The webhook's transport: a WSGI application served by waitress, and the worker queue around a ``WebhookReceiver``.

Python's ``http.server`` is "not recommended for production" (its own documentation), so the HTTP itself is
waitress's, a maintained pure-Python WSGI server: it parses requests, bounds the body
(``max_request_body_size`` = ``webhooks.max_body_bytes``, refused with 413 from the headers alone, before the
body is read), buffers it whole before the application sees it (a body cut short or stalled never reaches the
receiver: the connection is closed after ``channel_timeout``), and decodes chunked bodies. The application
(``WebhookApp``) routes and hands the body to the receiver, which does the rest::

    path / method ─▶ [waitress: headers, size, whole body] ─▶ receiver.receive (HMAC, JSON, EventId)
       404 / 405            413 / connection closed               401 / 400 / 200 duplicate / 202

Answers come at once; one background worker runs the reads one at a time, off the request path (the flows
in ``ukg2d365.flows.webhook_events``). Events still queued or running when the server stopped are picked up
again at the next start.

The server speaks plain HTTP: expose it through a TLS-terminating reverse proxy, never directly.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

import waitress
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer

from ukg2d365.config import Config
from ukg2d365.errors import Ukg2d365Error, UsageError
from ukg2d365.flows.runtime import internal_error_line, open_ledger
from ukg2d365.flows.webhook_events import (
    ActionRunner,
    FlowRunner,
    RunOutcome,
    WebhookAction,
    WebhookEventTable,
    merge,
)
from ukg2d365.ledger import LedgerError
from ukg2d365.ledger.tables import FAILED, RUNNING
from ukg2d365.webhook.receiver import Log, Reply, WebhookReceiver, stderr_log
from ukg2d365.webhook.signature import load_secret

WEBHOOK_PATHS = ("/", "/ukg/webhooks")
HEALTH_PATH = "/healthz"
READ_TIMEOUT_SECONDS = 10.0
THREADS = 4  # requests answered at once; each is short (verify, record, queue): the reads run on the worker

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

# ---------------------------------------------------------------------- the worker


class WebhookWorker:
    """One thread, one read at a time, off the request path; the queue holds actions of recorded events."""

    def __init__(self, table: WebhookEventTable, runner: ActionRunner, log: Log) -> None:
        self._table = table
        self._runner = runner
        self._log = log
        self._queue: queue.Queue[WebhookAction] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ukg2d365-webhook-worker", daemon=True)
        self.completed: Counter[str] = Counter()

    def start(self) -> None:
        self._thread.start()

    def submit(self, action: WebhookAction) -> None:
        self._queue.put(action)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the read in progress, start no other (still-queued events stay 'queued' for the next start)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            for action in merge(batch):
                if self._stop.is_set():
                    break
                self._run(action)

    def _run(self, action: WebhookAction) -> None:
        what = f"{action.kind} for event(s) {', '.join(action.event_ids)}"
        try:
            self._table.set_status(action.event_ids, RUNNING, action.kind)
            outcome = self._runner(action, self._stop)
        except Exception as exc:  # noqa: BLE001 - a failed read must never stop the server
            message = str(exc) if isinstance(exc, Ukg2d365Error) else \
                f"internal error (this is a bug): {internal_error_line(exc)}"
            outcome = RunOutcome(FAILED, message)
        try:
            self._table.set_status(action.event_ids, outcome.status, outcome.detail)
        except LedgerError as exc:
            self._log(f"cannot record the outcome of {what}: {exc}")
        self.completed[outcome.status] += 1
        self._log(f"{what}: {outcome.status}: {outcome.detail}")


# ---------------------------------------------------------------------- HTTP


STATUS_TEXT = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
               405: "Method Not Allowed", 413: "Payload Too Large", 500: "Internal Server Error",
               503: "Service Unavailable"}


def header_key(name: str) -> str:
    """The WSGI environ key of an HTTP request header (PEP 3333): ``X-UKG-Signature`` -> ``HTTP_X_UKG_SIGNATURE``."""
    return "HTTP_" + name.upper().replace("-", "_")


class WebhookApp:
    """The receiver as a WSGI application (PEP 3333): paths, methods and the body; the receiver does the rest."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            reply, allow = self._route(environ)
        except Exception as exc:  # noqa: BLE001 - one line in the service's log, never a traceback to the sender
            self.receiver.log(f"internal error (this is a bug): {internal_error_line(exc)}")
            reply, allow = Reply(500, {"error": "internal error"}), None
        body = json.dumps(reply.payload).encode("utf-8")
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-store")]
        if allow:
            headers.append(("Allow", allow))
        start_response(f"{reply.status} {STATUS_TEXT.get(reply.status, '')}".strip(), headers)
        return [body]

    def _route(self, environ: dict[str, Any]) -> tuple[Reply, str | None]:
        path, method = environ.get("PATH_INFO") or "/", environ.get("REQUEST_METHOD", "GET")
        if path == HEALTH_PATH:
            if method in ("GET", "HEAD"):
                return self.receiver.health(), None
            return Reply(405, {"error": "use GET"}), "GET"
        if path not in WEBHOOK_PATHS:
            return Reply(404, {"error": "not found"}), None
        if method != "POST":
            return Reply(405, {"error": "use POST"}), "POST"
        return self._post(environ), None

    def _post(self, environ: dict[str, Any]) -> Reply:
        receiver, client = self.receiver, str(environ.get("REMOTE_ADDR") or "?")
        length = int(environ.get("CONTENT_LENGTH") or 0)  # waitress has read and counted the whole body
        if length > receiver.cfg.max_body_bytes:
            return receiver.refuse(413, f"body of {length} bytes exceeds webhooks.max_body_bytes "
                                        f"({receiver.cfg.max_body_bytes})", client)
        body = environ["wsgi.input"].read(length)
        try:
            return receiver.receive(body, environ.get(header_key(receiver.cfg.signature_header)), client)
        except LedgerError as exc:
            # Not recorded, so not accepted: the sender retries later.
            receiver.log(f"cannot record an event from {client}: {exc}")
            return Reply(503, {"error": "cannot record the event now; retry later"})


class WebhookServer:
    """waitress serving ``WebhookApp``, plus the worker the receiver queues to; foreground (CLI) or a thread."""

    def __init__(self, receiver: WebhookReceiver, worker: WebhookWorker, host: str, port: int, *,
                 read_timeout: float = READ_TIMEOUT_SECONDS) -> None:
        self.receiver = receiver
        self.worker = worker
        seconds = max(1, math.ceil(read_timeout))
        try:
            server = waitress.create_server(
                WebhookApp(receiver), host=host, port=port, threads=THREADS, ident="ukg2d365-webhook",
                max_request_body_size=receiver.cfg.max_body_bytes,
                channel_timeout=seconds,  # a connection silent this long (a stalled body) is closed
                cleanup_interval=seconds,  # how often waitress looks for such connections
                asyncore_loop_timeout=1, expose_tracebacks=False, clear_untrusted_proxy_headers=True)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}",
                             hint="pick another --port, or stop what uses it") from None
        if isinstance(server, MultiSocketServer):  # one host and port give one socket; several are not offered
            server.close()
            raise UsageError(f"cannot listen on {host}:{port}: it names more than one address", hint="give one")
        self._server: BaseWSGIServer = server
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.effective_host)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{WEBHOOK_PATHS[1]}"

    def start(self) -> WebhookServer:
        """Serve in a background thread (tests, embedding)."""
        self.worker.start()
        self._thread = threading.Thread(target=self._run, name="ukg2d365-webhook-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, let the worker finish the read in progress, close the ledger."""
        self._shutdown()
        self.worker.stop()  # now, not after the serving loop's last turn: a queued read must not start meanwhile
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close()

    def serve_until_signal(self) -> None:
        """Serve in this (main) thread until SIGTERM or SIGINT; then stop as ``stop`` does."""
        def on_signal(signum: int, frame: FrameType | None) -> None:
            if not self._stopping:
                self.receiver.log(f"{signal.Signals(signum).name}: stopping once the current read is done")
                # The loop runs in this thread: it notices the closed sockets at its next turn.
                threading.Thread(target=self._shutdown, daemon=True).start()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.worker.start()
        try:
            self._run()
        finally:
            self._close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> None:
        try:
            self._server.run()
        except (OSError, ValueError):
            if not self._stopping:  # a socket closed under the loop by _shutdown is how it ends
                raise

    def _shutdown(self) -> None:
        """Ask the serving loop to close the listener and every connection; it returns when none is left."""
        if self._stopping:
            return
        self._stopping = True
        # waitress's loop is not thread-safe: the closing runs in the loop's own thread, woken by its trigger.
        with contextlib.suppress(OSError):
            self._server.trigger.pull_trigger(self._close_channels)

    def _close_channels(self) -> None:
        server = self._server
        for channel in list(server._map.values()):  # waitress's own map: listener, trigger, connections
            with contextlib.suppress(OSError):
                # a connection cleans up in handle_close; the listener closes itself and the trigger
                channel.handle_close() if isinstance(channel, HTTPChannel) else channel.close()
        server.task_dispatcher.shutdown()

    def _close(self) -> None:
        self._shutdown()
        self._close_channels()  # in case no serving loop ran (never started, or already returned)
        self.worker.stop()
        self.receiver.ledger.close()


def build_server(config: Config, *, ledger_path: Path | None = None, host: str | None = None,
                 port: int | None = None, runner: ActionRunner | None = None, log: Log = stderr_log,
                 read_timeout: float = READ_TIMEOUT_SECONDS) -> WebhookServer:
    """The server for ``webhook serve``: secret checked, ledger opened, unfinished events queued again."""
    cfg = config.webhooks
    secret = load_secret(cfg)
    ledger = open_ledger(config, ledger_path)
    try:
        worker = WebhookWorker(WebhookEventTable(ledger), runner or FlowRunner(config, ledger_path), log)
        receiver = WebhookReceiver(cfg, secret, ledger, worker, pay_groups=config.ukg.pay_groups, log=log)
        server = WebhookServer(receiver, worker, host if host is not None else cfg.host,
                               port if port is not None else cfg.port, read_timeout=read_timeout)
        requeued = receiver.requeue_unfinished()
    except BaseException:
        ledger.close()
        raise
    if requeued:
        log(f"{requeued} event(s) left unfinished by the last run queued again")
    return server
