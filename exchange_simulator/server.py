"""HTTP front end of the simulator (stdlib ``http.server``, HTTP/1.1 keep-alive)."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

from exchange_simulator.config import SimulatorConfig
from exchange_simulator.exchange import BadRequest, Exchange, parse_tickers

log = logging.getLogger("exchange_simulator")

MAX_BODY_BYTES = 1 << 20


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Bursts of new keep-alive connections must not overflow the accept backlog.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], exchange: Exchange) -> None:
        self.exchange = exchange
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is routine for an
        exchange; anything else is a bug and keeps its traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.info("event=client_gone address=%s", client_address)
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Unblock handler threads parked on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ExchangeSimulator/1.0"
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per business event is logged elsewhere; no access log

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send(400, {"error": "invalid_request", "detail": str(exc)})
            return
        url = urlsplit(self.path)
        exchange = self.server.exchange
        if not url.path.startswith("/_control/"):
            slow_ms = exchange.faults.slow_ms
            if slow_ms:
                time.sleep(slow_ms / 1000)
        try:
            status, payload = self._route(method, url.path, url.query, body)
        except Exception:
            log.exception("event=internal_error method=%s path=%s", method, url.path)
            status, payload = 500, {"error": "internal"}
        self._send(status, payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise ValueError("chunked bodies are not supported; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ValueError("bad Content-Length") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _route(self, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
        exchange = self.server.exchange
        segments = [unquote(s) for s in path.strip("/").split("/")]
        match method, segments:
            case "GET", ["quotes", ticker]:
                quote = exchange.quote(ticker)
                return (200, quote) if quote else (404, {"error": "unknown_ticker"})
            case "GET", ["quotes"]:
                try:
                    tickers = parse_tickers(_list_param(query, "tickers"))
                except BadRequest as exc:
                    exchange.stats.incr("bad_requests")
                    return 400, {"error": exc.error, "detail": exc.detail}
                return 200, exchange.quotes(tickers)
            case "POST", ["orders"]:
                parsed = _json(body)
                if parsed is _INVALID:
                    exchange.stats.incr("bad_requests")
                    return 400, {"error": "invalid_json", "detail": "body is not valid JSON"}
                return exchange.submit_order(parsed)
            case "GET", ["orders", client_order_id]:
                order = exchange.get_order(client_order_id)
                return (200, order) if order else (404, {"status": "unknown"})
            case "GET", ["_control", "stats"]:
                return 200, exchange.stats_snapshot()
            case "GET", ["_control", "faults"]:
                return 200, exchange.faults.to_json()
            case "POST", ["_control", "faults"]:
                changes = _json(body)
                if not isinstance(changes, dict):
                    return 400, {"error": "invalid_json", "detail": "expected a JSON object"}
                try:
                    return 200, exchange.update_faults(changes).to_json()
                except ValueError as exc:
                    return 400, {"error": "invalid_faults", "detail": str(exc)}
            case "GET", ["_control", "orders"]:
                account_id = parse_qs(query).get("account_id", [None])[0]
                return 200, exchange.list_orders(account_id)
            case _, ["quotes"] | ["quotes", _] | ["orders"] | ["orders", _] | ["_control", _]:
                return 405, {"error": "method_not_allowed"}
        return 404, {"error": "not_found"}

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


_INVALID = object()


def _list_param(query: str, name: str) -> list[str] | None:
    """The comma-separated items of ``name`` in a raw query string; None if it is absent.

    Commas split before percent-decoding, so an escaped comma stays inside its item as an
    escaped slash stays inside a path segment. Repeats of ``name`` add their items.
    """
    items: list[str] | None = None
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if unquote_plus(key) == name:
            items = (items or []) + [unquote_plus(item) for item in value.split(",")]
    return items


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else _INVALID
    except ValueError:
        return _INVALID


class ExchangeSimulator:
    """The simulator as an in-process server: ``start()``, ``url``, ``stop()``."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.exchange = Exchange(
            seed=config.seed,
            webhook_secret=config.webhook_secret,
            faults=config.faults,
            callback_workers=config.callback_workers,
            callback_connect_timeout=config.callback_connect_timeout,
            callback_read_timeout=config.callback_read_timeout,
            callback_give_up_after=config.callback_give_up_after,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve on background threads; returns once the socket is listening."""
        self._server = _Server((self.config.host, self.config.port), self.exchange)
        self.exchange.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="sim-http",
            daemon=True,
        )
        self._thread.start()
        log.info("event=listening url=%s seed=%d", self.url, self.config.seed)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.exchange.stop()
        log.info("event=stopped")

    def __enter__(self) -> ExchangeSimulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
