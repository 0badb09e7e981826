"""Hostile slow clients against the real stack behind its buffering proxy (nginx, see
deploy/nginx/): more connections than gunicorn has sync workers, each trickling its
request header or body a byte at a time. Without the proxy each of them holds a worker
until gunicorn's 30 s timeout; behind it they hold only nginx connections, and a request
that never finishes never reaches Django."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
import requests
from django.conf import settings

from devtools import proxy
from devtools.stack import Stack, wait_for
from tests.factories import callback_body, create_customer, signed_headers
from trades.models import Trade

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

WEB_WORKERS = 2
CALLBACK_WORKERS = 2
# The proxy's client_header_timeout / client_body_timeout in this test.
CLIENT_TIMEOUT = 3
# Generous: the point is "not blocked for gunicorn's 30 s", not a latency figure.
ANSWER_WITHIN = 3.0


@dataclass
class SlowClient:
    """One connection that sends a request a byte every `interval` seconds, reconnecting
    when the proxy cuts it off, until `stop` is set. `header_only`: trickles the request
    header; otherwise sends the header at once and trickles the body."""

    port: int
    path: str
    header_only: bool
    interval: float = 0.5
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    connections: int = 0

    def request(self) -> tuple[bytes, bytes]:
        body = b'{"ticker": "AAPL", "side": "buy", "quantity": 1}' + b" " * 200
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head, body

    def run(self) -> None:
        head, body = self.request()
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    self.connections += 1
                    if self.header_only:
                        trickle = head + body
                    else:
                        sock.sendall(head)
                        trickle = body
                    for i in range(len(trickle)):
                        if self.stop.wait(self.interval):
                            return
                        sock.sendall(trickle[i : i + 1])
                        self.sent += 1
            except OSError:
                # Cut off by the proxy (or refused): connect again, at the same pace.
                if self.stop.wait(self.interval):
                    return


@pytest.fixture
def stack(stack: Stack) -> Stack:
    """The shared proxied stack (tests/processes/conftest.py), started with few workers."""
    if proxy.nginx_binary() is None:
        pytest.fail(f"nginx is not installed: {proxy.INSTALL_HINT} (make test does it)")
    stack.start_exchange("--fill-delay-ms", "1,5")
    stack.start_web(WEB_WORKERS)
    stack.start_callbacks(CALLBACK_WORKERS)
    stack.start_proxy(client_timeout=f"{CLIENT_TIMEOUT}s")
    stack.start_worker("w1")
    return stack


def slow_clients(stack: Stack) -> list[SlowClient]:
    """Web workers + 4 on the customer port, callback workers + 2 on the callback port,
    half of them slow in the header, half in the body."""
    clients = []
    for n in range(WEB_WORKERS + 4):
        clients.append(SlowClient(stack.web_port, "/api/v1/trades/", header_only=n % 2 == 0))
    for n in range(CALLBACK_WORKERS + 2):
        clients.append(SlowClient(stack.callbacks_port, "/exchange/callback/", n % 2 == 0))
    return clients


def timed(call, *args, **kwargs) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = call(*args, **kwargs)
    return time.monotonic() - started, response


def post_callback(stack: Stack, trade: Trade, msg_id: str) -> requests.Response:
    body = callback_body(trade)
    meta = signed_headers(body, secret=stack.secret, msg_id=msg_id)
    headers = {key.removeprefix("HTTP_").replace("_", "-"): value for key, value in meta.items()}
    return requests.post(
        f"http://127.0.0.1:{stack.callbacks_port}/exchange/callback/",
        data=body,
        headers={**headers, "Content-Type": "application/json"},
        timeout=10,
    )


def test_slow_clients_hold_no_worker_placements_and_callbacks_are_answered(stack):
    customer = create_customer(cash="100000.00")
    with requests.Session() as session:
        first = stack.place(session, customer.token, ticker="AAPL", side="buy", quantity=1)
    assert first.status_code == 201, first.text
    # It went out and its fill came back through the proxy's callback port.
    filled = wait_for(
        lambda: Trade.objects.filter(id=first.json()["id"], status="filled").first(),
        timeout=30,
        what="the first trade to fill",
    )

    clients = slow_clients(stack)
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    try:
        # Every slow connection is open and part-way through its request.
        wait_for(lambda: all(c.sent >= 3 for c in clients), timeout=15, what="the slow clients")
        placed = []
        for n in range(4):
            with requests.Session() as session:
                took, response = timed(
                    lambda: stack.place(
                        session, customer.token, ticker="AAPL", side="buy", quantity=1
                    )
                )
            assert response.status_code == 201, response.text
            assert took < ANSWER_WITHIN, f"placement {n} took {took:.1f} s"
            placed.append(response.json()["id"])
            took, health = timed(lambda: requests.get(f"{stack.web_url}/healthz", timeout=10))
            assert health.status_code == 200 and took < ANSWER_WITHIN, (health.status_code, took)
            took, callback = timed(post_callback, stack, filled, f"msg_slow_{n}")
            assert callback.status_code == 200, callback.text
            assert callback.json()["result"] == "already_final"
            assert took < ANSWER_WITHIN, f"callback {n} took {took:.1f} s"
        # Still trickling (not something that had already given up).
        assert all(c.sent >= 3 for c in clients)
        wait_for(
            lambda: Trade.objects.filter(id__in=placed, status="filled").count() == len(placed),
            timeout=30,
            what="the trades placed meanwhile to fill",
        )
    finally:
        for client in clients:
            client.stop.set()
        for thread in threads:
            thread.join(timeout=5)
    # The header tricklers were cut off by client_header_timeout and came back.
    assert all(c.connections >= 1 for c in clients)


def test_a_request_stalled_mid_body_is_dropped_by_the_proxy_and_never_reaches_django(stack):
    customer = create_customer(cash="100000.00")
    key = f"stalled-{uuid.uuid4().hex[:12]}"
    complete = json.dumps(
        {"ticker": "AAPL", "side": "buy", "quantity": 1, "client_order_id": key}
    ).encode()
    # The whole placement but its last byte (a trailing space): nothing left to guess.
    body = complete + b" "
    head = (
        "POST /api/v1/trades/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Token {customer.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", stack.web_port), timeout=CLIENT_TIMEOUT + 10) as s:
        s.sendall(head + body[:-1])
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    waited = time.monotonic() - started

    # client_body_timeout ended it, long before gunicorn's 30 s. nginx (1.22) closes the
    # connection without an answer on a body timeout; if a version answers, it is 408 JSON.
    assert CLIENT_TIMEOUT - 0.5 <= waited < CLIENT_TIMEOUT + 5, waited
    if answer:
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.split()[1] == b"408", answer
        headers, _, payload = rest.partition(b"\r\n\r\n")
        assert b"application/json" in headers.lower(), answer
        assert json.loads(payload)["error"] == "request_timeout"
    # The proxy recorded it as a 408; Django never saw it: no trade, nothing in its log.
    wait_for(
        lambda: any(
            '"POST /api/v1/trades/ HTTP/1.1" 408' in line
            for line in stack.proxy_access_log().splitlines()
        ),
        timeout=5,
        what="the proxy to log the 408",
    )
    assert not Trade.objects.filter(client_order_id=key).exists()
    # The same placement sent whole goes through.
    with requests.Session() as session:
        response = stack.place(session, customer.token, **json.loads(complete))
    assert response.status_code == 201, response.text


def test_the_proxy_answers_its_own_errors_in_the_apps_json_shape(stack):
    big = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    cases = {
        413: lambda: requests.post(f"{stack.web_url}/api/v1/trades/", data=big, timeout=10),
        414: lambda: requests.get(f"{stack.web_url}/{'a' * 40000}", timeout=10),
        400: lambda: requests.get(f"{stack.web_url}/", headers={"X-Big": "a" * 9000}, timeout=10),
    }
    for status, call in cases.items():
        response = call()
        assert response.status_code == status, (status, response.text)
        assert response.headers["Content-Type"] == "application/json"
        assert set(response.json()) == {"error", "detail"}
    # The admin process is not running: a 502 from the proxy, still JSON.
    admin = requests.get(f"{stack.web_url}/admin/", timeout=10)
    assert admin.status_code == 502 and admin.json()["error"] == "bad_gateway"
    # The callback port reaches only the callback receiver.
    receiver = f"http://127.0.0.1:{stack.callbacks_port}"
    for hidden in ("/api/v1/trades/", "/admin/"):
        assert requests.get(receiver + hidden, timeout=5).status_code == 404, hidden


def test_the_proxy_refuses_chunked_bodies_as_the_app_does(stack):
    """The app answers a chunked body 413 (no Content-Length). nginx would read it whole and
    forward it with a Content-Length, so the proxy applies the rule itself, on both ports."""
    customer = create_customer(cash="100000.00")
    key = f"chunked-{uuid.uuid4().hex[:12]}"
    placement = json.dumps(
        {"ticker": "AAPL", "side": "buy", "quantity": 1, "client_order_id": key}
    ).encode()
    targets = {
        f"{stack.web_url}/api/v1/trades/": {"Authorization": f"Token {customer.token}"},
        f"http://127.0.0.1:{stack.callbacks_port}/exchange/callback/": {},
    }
    for url, headers in targets.items():
        # A generator body: requests sends it with Transfer-Encoding: chunked.
        response = requests.post(
            url,
            data=iter([placement]),
            headers={**headers, "Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 413, (url, response.text)
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] == "request_too_large"
    assert not Trade.objects.filter(client_order_id=key).exists()
    # The same placement with a Content-Length goes through.
    with requests.Session() as session:
        response = stack.place(session, customer.token, **json.loads(placement))
    assert response.status_code == 201, response.text
