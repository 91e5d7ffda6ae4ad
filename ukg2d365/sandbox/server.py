"""HTTPS listeners for the simulated services: one threaded server per service, loopback only.

Each request is parsed into a ``SimRequest``, run through fault injection, dispatched to the service's
``handle()`` and written back with a Content-Length, over HTTP/1.1 keep-alive (requests and msal
reuse connections, and so must the benchmark). ``stop()`` closes idle keep-alive connections itself,
so no handler thread outlives the sandbox.
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import sys
import threading
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from ukg2d365.sandbox.faults import FaultRule, FaultSet, fault_response, status_response
from ukg2d365.sandbox.tokens import TokenRegistry
from ukg2d365.sandbox.types import SimRequest, SimResponse

HOST = "127.0.0.1"  # never anything else: the sandbox speaks with throwaway credentials
IDLE_TIMEOUT = 120.0  # seconds a keep-alive connection may sit idle
HANDSHAKE_TIMEOUT = 10.0
MAX_BODY = 256 * 1024 * 1024
ADMIN_PREFIX = "/_sandbox/"


class Service(Protocol):
    def handle(self, req: SimRequest) -> SimResponse: ...


class Stats:
    """Requests received per service (admin calls excluded), for the benchmark and the tests."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._counts = {n: 0 for n in names}

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            for name in self._counts:
                self._counts[name] = 0


class _Drop(Exception):
    """Close the connection without writing a response."""


class _Conn:
    """One accepted connection; ``tls`` is set once the TLS layer wraps the raw socket."""

    __slots__ = ("raw", "tls", "closed")

    def __init__(self, raw: socket.socket) -> None:
        self.raw = raw
        self.tls: ssl.SSLSocket | None = None
        self.closed = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    # Buffer the response so headers and body leave in one write (handle_one_request flushes it):
    # separate small writes hit Nagle + delayed ACK and cost ~40 ms per request on keep-alive.
    wbufsize = -1
    server: _TlsServer

    def log_message(self, format: str, *args: Any) -> None:
        # silent by default: the per-request access log would drown the CLI's own output
        if self.server.owner.verbose:
            sys.stderr.write(f"[sandbox {self.server.owner.name}] {self.address_string()} {format % args}\n")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400, "Bad request body")
            return
        parts = urlsplit(self.path)
        req = SimRequest(
            method=self.command,
            path=unquote(parts.path),
            raw_path=self.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            resp = self.server.owner.process(req, self.client_address[0])
        except _Drop:
            self.close_connection = True
            self.wfile.flush()
            return
        self._write(resp)

    def _write(self, resp: SimResponse) -> None:
        self.send_response(resp.status)
        headers = {k.lower(): (k, v) for k, v in resp.headers.items()}
        for name, value in headers.values():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        no_body = resp.status in (204, 304) or resp.status < 200
        if not no_body:
            self.send_header("Content-Length", str(len(resp.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not no_body and self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class _TlsServer(ThreadingHTTPServer):
    # Handler threads are daemons (a stuck one never blocks interpreter exit) but tracked here and
    # joined by join_handlers(): the stdlib's server_close() only joins non-daemon threads.
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: ServiceServer, port: int, context: ssl.SSLContext) -> None:
        self.owner = owner
        self.context = context
        self._conns: set[_Conn] = set()
        self._conns_lock = threading.Lock()
        self._handlers: set[threading.Thread] = set()
        super().__init__((HOST, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) we neither need nor want to wait for
        socketserver.TCPServer.server_bind(self)
        self.server_name = HOST
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        conn = _Conn(request)
        thread = threading.Thread(
            target=self._run_handler, args=(conn, client_address), name=f"sandbox-{self.owner.name}-conn", daemon=True
        )
        with self._conns_lock:
            self._conns.add(conn)
            self._handlers.add(thread)
        thread.start()

    def _run_handler(self, conn: _Conn, client_address: Any) -> None:
        try:
            self.process_request_thread(conn, client_address)  # type: ignore[arg-type]
        finally:
            with self._conns_lock:
                self._handlers.discard(threading.current_thread())

    def join_handlers(self, timeout: float) -> None:
        with self._conns_lock:
            threads = list(self._handlers)
        for thread in threads:
            thread.join(timeout)

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn: _Conn = request
        # The TLS handshake runs in the handler thread, so a slow client never blocks accept().
        conn.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = self.context.wrap_socket(conn.raw, server_side=True, do_handshake_on_connect=False)
        with self._conns_lock:
            conn.tls = tls
        if self.owner.stopping.is_set():
            return
        tls.settimeout(HANDSHAKE_TIMEOUT)
        tls.do_handshake()
        self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]

    def shutdown_request(self, request: Any) -> None:
        conn: _Conn = request
        with self._conns_lock:
            conn.closed = True
            self._conns.discard(conn)
            sock = conn.tls or conn.raw
        try:
            sock.close()
        except OSError:
            pass

    def close_request(self, request: Any) -> None:
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError, ValueError)):
            return  # resets, failed handshakes, sockets closed by stop(): client-side noise
        traceback.print_exc()

    def abort_connections(self) -> None:
        """Wake every handler blocked on a keep-alive read by shutting its socket down."""
        with self._conns_lock:
            for conn in list(self._conns):
                if conn.closed:
                    continue
                sock = conn.tls or conn.raw
                try:
                    # socket.socket.shutdown, not SSLSocket.shutdown: the latter tears down the SSL
                    # object under a thread that may be reading from it.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass


class ServiceServer:
    """One HTTPS listener on 127.0.0.1 for one simulated service."""

    def __init__(
        self,
        name: str,
        *,
        port: int,
        context: ssl.SSLContext,
        faults: FaultSet,
        stats: Stats,
        verbose: bool = False,
    ) -> None:
        self.name = name
        self.faults = faults
        self.stats = stats
        self.verbose = verbose
        self.service: Service | None = None
        self.admin: Callable[[SimRequest], SimResponse] | None = None
        self.stopping = threading.Event()
        self._httpd = _TlsServer(self, port, context)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def start(self) -> None:
        if self.service is None:
            raise RuntimeError(f"sandbox {self.name}: no service mounted")
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sandbox-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.abort_connections()
        self._httpd.server_close()  # closes the listening socket
        self._httpd.join_handlers(timeout=5.0)

    def _sleep(self, ms: int) -> None:
        if ms > 0:
            self.stopping.wait(ms / 1000.0)  # interruptible, so stop() never waits for a latency fault

    def process(self, req: SimRequest, client_host: str) -> SimResponse:
        if self.admin is not None and req.path.startswith(ADMIN_PREFIX):
            if not ip_address(client_host).is_loopback:
                return SimResponse.json(403, {"error": "the sandbox admin API is loopback-only"})
            return self._handle(req, self.admin)
        self.stats.count(self.name)
        self._sleep(self.faults.latency_ms.get(self.name, 0))
        rule = self.faults.take(self.name, req.method, req.path)
        if rule is not None:
            if rule.action == "drop_before":
                raise _Drop()
            if rule.action == "latency":
                self._sleep(rule.latency_ms or 0)
            elif rule.action == "revoke_tokens":
                self.faults.revoke_tokens()
            elif rule.action != "drop_after":
                canned = fault_response(self.name, rule, req.path)
                assert canned is not None
                return canned
        assert self.service is not None
        resp = self._handle(req, self.service.handle)
        if rule is not None and rule.action == "drop_after":
            raise _Drop()  # processed, but the client never learns the outcome
        return resp

    def _handle(self, req: SimRequest, handler: Callable[[SimRequest], SimResponse]) -> SimResponse:
        try:
            return handler(req)
        except Exception:
            # a simulator bug: show it loudly, answer like an unhealthy server would
            traceback.print_exc()
            return status_response(self.name, 500)


class AdminApi:
    """``/_sandbox/...`` on the Entra port: drive faults, tokens and counters over HTTP."""

    def __init__(self, faults: FaultSet, tokens: TokenRegistry, stats: Stats) -> None:
        self.faults = faults
        self.tokens = tokens
        self.stats = stats

    def __call__(self, req: SimRequest) -> SimResponse:
        route = (req.method, req.path.rstrip("/"))
        try:
            if route == ("POST", "/_sandbox/faults"):
                rule = self.faults.add(FaultRule.from_dict(self._json(req)))
                return SimResponse.json(201, rule.to_dict())
            if route == ("GET", "/_sandbox/faults"):
                return SimResponse.json(200, [r.to_dict() for r in self.faults.rules()])
            if route == ("DELETE", "/_sandbox/faults"):
                self.faults.clear()
                return SimResponse.empty(204)
            if route == ("POST", "/_sandbox/latency"):
                data = self._json(req)
                self.faults.set_latency(str(data.get("service")), int(data.get("latency_ms", 0)))
                return SimResponse.json(200, self.faults.latency_ms)
            if route == ("POST", "/_sandbox/revoke-tokens"):
                return SimResponse.json(200, {"revoked": self.tokens.revoke_all()})
            if route == ("GET", "/_sandbox/stats"):
                return SimResponse.json(200, self.stats.snapshot())
        except (ValueError, TypeError) as exc:
            return SimResponse.json(400, {"error": str(exc)})
        return SimResponse.json(404, {"error": f"no admin route {req.method} {req.path}"})

    @staticmethod
    def _json(req: SimRequest) -> dict[str, Any]:
        data = json.loads(req.body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data
