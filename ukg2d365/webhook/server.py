"""The webhook's transport: the HTTP listener and the worker queue around a ``WebhookReceiver``.

A request goes through, in this order (the first failing step answers)::

    path / method ─▶ Content-Length ─▶ read exactly that many bytes ─▶ receiver.receive (HMAC, JSON, EventId)
       404 / 405         411 / 413            400 "truncated"              401 / 400 / 200 duplicate / 202

Answers come at once; one background worker runs the reads one at a time, off the request path (the flows
in ``ukg2d365.flows.webhook_events``). Events still queued or running when the server stopped are picked up
again at the next start.

The server speaks plain HTTP: expose it through a TLS-terminating reverse proxy, never directly.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import socket
import socketserver
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from ukg2d365.config import Config
from ukg2d365.errors import Ukg2d365Error, UsageError
from ukg2d365.flows.runtime import open_ledger
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
            message = str(exc) if isinstance(exc, Ukg2d365Error) else f"internal error: {type(exc).__name__}: {exc}"
            outcome = RunOutcome(FAILED, message)
        try:
            self._table.set_status(action.event_ids, outcome.status, outcome.detail)
        except LedgerError as exc:
            self._log(f"cannot record the outcome of {what}: {exc}")
        self.completed[outcome.status] += 1
        self._log(f"{what}: {outcome.status}: {outcome.detail}")


# ---------------------------------------------------------------------- HTTP


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: WebhookReceiver
    read_timeout: float

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on a host without reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _HttpServer6(_HttpServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "ukg2d365-webhook"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Bounds a client that stops sending: headers and body alike must arrive within this.
        self.connection.settimeout(self.server.read_timeout)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access lines are left to the reverse proxy; the receiver logs what matters."""

    def log_error(self, format: str, *args: Any) -> None:
        self.server.receiver.log(f"{self._client()}: " + (format % args))

    def _client(self) -> str:
        return str(self.client_address[0]) if self.client_address else "?"

    def _path(self) -> str:
        return urlsplit(self.path).path

    def _reply(self, reply: Reply, *, allow: str | None = None) -> None:
        body = json.dumps(reply.payload).encode("utf-8")
        self.close_connection = True
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            if allow:
                self.send_header("Allow", allow)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass  # the sender went away; it retries on its own

    def _not_allowed(self) -> None:
        path = self._path()
        if path in WEBHOOK_PATHS:
            self._reply(Reply(405, {"error": "use POST"}), allow="POST")
        elif path == HEALTH_PATH:
            self._reply(Reply(405, {"error": "use GET"}), allow="GET")
        else:
            self._reply(Reply(404, {"error": "not found"}))

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self._path() == HEALTH_PATH:
            self._reply(self.server.receiver.health())
        else:
            self._not_allowed()

    def do_POST(self) -> None:
        receiver = self.server.receiver
        client = self._client()
        if self._path() not in WEBHOOK_PATHS:
            self._reply(Reply(404, {"error": "not found"}))
            return
        lengths = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding") is not None or not lengths:
            self._reply(receiver.refuse(411, "Content-Length is required (chunked bodies are not accepted)", client))
            return
        if len(set(lengths)) != 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
            self._reply(receiver.refuse(400, "Content-Length is not one number", client))
            return
        length = int(lengths[0])
        if length > receiver.cfg.max_body_bytes:
            # Answer before reading: a sender cannot make us buffer more than webhooks.max_body_bytes.
            self._reply(receiver.refuse(413, f"body of {length} bytes exceeds webhooks.max_body_bytes "
                                             f"({receiver.cfg.max_body_bytes})", client))
            return
        body = self._read_body(length)
        if body is None:
            self._reply(receiver.refuse(400, f"truncated: fewer than the {length} bytes announced arrived", client))
            return
        try:
            reply = receiver.receive(body, self.headers.get(receiver.cfg.signature_header), client)
        except LedgerError as exc:
            # Not recorded, so not accepted: the sender retries later.
            receiver.log(f"cannot record an event from {client}: {exc}")
            reply = Reply(503, {"error": "cannot record the event now; retry later"})
        self._reply(reply)

    def _read_body(self, length: int) -> bytes | None:
        """Exactly ``length`` bytes within the read timeout, or None (the body was cut short or stalled)."""
        deadline = time.monotonic() + self.server.read_timeout
        chunks: list[bytes] = []
        remaining = length
        try:
            while remaining > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.connection.settimeout(left)
                # read1: at most one recv, so a sender trickling bytes cannot stretch the deadline.
                chunk = self.rfile.read1(min(remaining, 65536))  # type: ignore[attr-defined]
                if not chunk:
                    return None
                chunks.append(chunk)
                remaining -= len(chunk)
        except OSError:  # includes the socket timeout
            return None
        finally:
            self.connection.settimeout(self.server.read_timeout)
        return b"".join(chunks)


class WebhookServer:
    """The HTTP listener plus the worker the receiver queues to; run in the foreground (CLI) or a thread (tests)."""

    def __init__(self, receiver: WebhookReceiver, worker: WebhookWorker, host: str, port: int, *,
                 read_timeout: float = READ_TIMEOUT_SECONDS) -> None:
        self.receiver = receiver
        self.worker = worker
        server_class = _HttpServer6 if ":" in host else _HttpServer
        try:
            self.httpd: _HttpServer = server_class((host, port), _Handler)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                             hint="pick another --port, or stop what uses it") from None
        self.httpd.receiver = receiver
        self.httpd.read_timeout = read_timeout
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self.httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{WEBHOOK_PATHS[1]}"

    def start(self) -> WebhookServer:
        """Serve in a background thread (tests, embedding)."""
        self.worker.start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="ukg2d365-webhook-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, let the worker finish the read in progress, close the ledger."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._close()

    def serve_until_signal(self) -> None:
        """Serve in this (main) thread until SIGTERM or SIGINT; then stop as ``stop`` does."""
        stopping = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if not stopping.is_set():
                stopping.set()
                self.receiver.log(f"{signal.Signals(signum).name}: stopping once the current read is done")
                # shutdown() waits for serve_forever to return, so it cannot run in this (serving) thread.
                threading.Thread(target=self.httpd.shutdown, daemon=True).start()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.worker.start()
        try:
            self.httpd.serve_forever(poll_interval=0.5)
        finally:
            self._close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _close(self) -> None:
        self.httpd.server_close()
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
