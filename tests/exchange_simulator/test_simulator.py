"""End-to-end tests of the exchange simulator over real HTTP on loopback."""

from __future__ import annotations

import base64
import functools
import itertools
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from exchange_simulator.config import SimulatorConfig
from exchange_simulator.faults import FaultConfig
from exchange_simulator.server import ExchangeSimulator

SECRET = "whsec_" + base64.b64encode(b"simulator-test-secret-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-abcdefghijklmnop").decode()
_ids = itertools.count(1)


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """A callback endpoint that records requests and answers from a script of statuses."""

    def __init__(self, statuses: list[int] | None = None, default_status: int = 200) -> None:
        self.requests: list[Received] = []
        self._statuses = list(statuses or [])
        self._default = default_status
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = receiver._record(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _record(self, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            self.requests.append(Received(headers, body, time.monotonic()))
            return self._statuses.pop(0) if self._statuses else self._default

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/callbacks/exchange"

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        wait_until(lambda: self.count() >= n, timeout, f"{n} callback(s)")
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Sim:
    """A running simulator plus a keep-alive HTTP session to it."""

    def __init__(self, simulator: ExchangeSimulator) -> None:
        self.simulator = simulator
        self.url = simulator.url
        self.http = requests.Session()

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url + path, timeout=5)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.http.post(self.url + path, json=body, timeout=5)

    def stats(self) -> dict[str, Any]:
        return self.get("/_control/stats").json()

    def order(self, client_order_id: str) -> dict[str, Any]:
        return self.get(f"/orders/{client_order_id}").json()

    def wait_final(self, client_order_id: str, timeout: float = 5.0) -> dict[str, Any]:
        return wait_until(
            lambda: (o := self.order(client_order_id))["status"] in ("filled", "rejected") and o,
            timeout,
            f"order {client_order_id} to finish",
        )

    def wait_quiet(self, timeout: float = 5.0) -> dict[str, Any]:
        """Wait until nothing is scheduled and no callback is in flight: no more can arrive."""
        return wait_until(
            lambda: (
                (s := self.stats())["scheduled_events"] == 0
                and s["callbacks_pending"] == 0
                and s["open_orders"] == 0
                and s
            ),
            timeout,
            "the simulator to go quiet",
        )


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Sim]]:
    started: list[Sim] = []

    def make(
        *,
        seed: int = 42,
        secret: str = SECRET,
        give_up_after: float = 600.0,
        **faults: Any,
    ) -> Sim:
        faults.setdefault("fill_delay_ms", (1, 5))
        config = SimulatorConfig(
            webhook_secret=secret,
            host="127.0.0.1",
            port=0,
            seed=seed,
            faults=FaultConfig().updated(faults),
            callback_give_up_after=give_up_after,
        )
        simulator = ExchangeSimulator(config)
        simulator.start()
        sim = Sim(simulator)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.http.close()
        sim.simulator.stop()


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.close()


def order_body(callback_url: str | None, /, **overrides: Any) -> dict[str, Any]:
    body = {
        "client_order_id": f"trade-{next(_ids)}",
        "account_id": "acct-1",
        "sequence": next(_ids),
        "ticker": "AAPL",
        "side": "buy",
        "quantity": 10,
        "max_price": "100000.0000",
        "callback_url": callback_url,
    }
    body.update(overrides)
    return body


def verified(received: Received, secret: str = SECRET) -> dict[str, Any]:
    return Webhook(secret).verify(received.body, received.headers)


# --- quotes ---------------------------------------------------------------------------------


def test_quote_is_repeatable_for_a_seed(make_sim: Callable[..., Sim]) -> None:
    first, second, other = make_sim(seed=7), make_sim(seed=7), make_sim(seed=8)

    def walk(sim: Sim) -> list[str]:
        return [sim.get(f"/quotes/{t}").json()["price"] for t in ["AAPL", "MSFT"] * 5]

    prices = walk(first)
    assert prices == walk(second)
    assert prices != walk(other)
    for price in prices:
        assert len(price.split(".")[1]) == 4
        assert Decimal("4") < Decimal(price) < Decimal("510")
    quote = first.get("/quotes/BRK.B").json()
    assert quote["ticker"] == "BRK.B"
    assert datetime.fromisoformat(quote["as_of"]).tzinfo is not None


def test_quote_walk_moves_in_small_steps(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim()
    prices = [Decimal(sim.get("/quotes/TSLA").json()["price"]) for _ in range(50)]
    assert len(set(prices)) > 1
    for before, after in itertools.pairwise(prices):
        assert abs(after - before) <= before * Decimal("0.002") + Decimal("0.0001")


@pytest.mark.parametrize("ticker", ["aapl", "1ABC", "ABCDEFGHIJK", "A-B"])
def test_invalid_ticker_is_unknown(make_sim: Callable[..., Sim], ticker: str) -> None:
    response = make_sim().get(f"/quotes/{ticker}")
    assert response.status_code == 404
    assert response.json() == {"error": "unknown_ticker"}


def test_batch_quote(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim()
    response = sim.get("/quotes?tickers=AAPL,nope,BRK.B")
    assert response.status_code == 200
    body = response.json()
    assert [q["ticker"] for q in body["quotes"]] == ["AAPL", "BRK.B"]
    assert body["unknown"] == ["nope"]
    for quote in body["quotes"]:
        assert set(quote) == {"ticker", "price", "as_of"}
        assert len(quote["price"].split(".")[1]) == 4
        assert Decimal("4") < Decimal(quote["price"]) < Decimal("510")
        assert datetime.fromisoformat(quote["as_of"]).tzinfo is not None


def test_batch_quote_answers_duplicates_once_in_order(make_sim: Callable[..., Sim]) -> None:
    body = make_sim().get("/quotes?tickers=MSFT,AAPL,MSFT,x,x,AAPL").json()
    assert [q["ticker"] for q in body["quotes"]] == ["MSFT", "AAPL"]
    assert body["unknown"] == ["x"]


def test_batch_quote_moves_the_walk_like_single_quotes(make_sim: Callable[..., Sim]) -> None:
    batched, single = make_sim(seed=11), make_sim(seed=11)
    for _ in range(5):
        quotes = batched.get("/quotes?tickers=AAPL,MSFT,AAPL,TSLA").json()["quotes"]
        expected = [single.get(f"/quotes/{t}").json() for t in ("AAPL", "MSFT", "TSLA")]
        assert [q["price"] for q in quotes] == [q["price"] for q in expected]
    mixed = batched.get("/quotes/MSFT").json()["price"]
    assert mixed == single.get("/quotes?tickers=MSFT").json()["quotes"][0]["price"]


def test_batch_quote_escaped_comma_stays_in_its_ticker(make_sim: Callable[..., Sim]) -> None:
    body = make_sim().get("/quotes?tickers=A%2CB,BRK%2EB").json()
    assert body["unknown"] == ["A,B"]
    assert [q["ticker"] for q in body["quotes"]] == ["BRK.B"]


def test_batch_quote_accepts_the_maximum(make_sim: Callable[..., Sim]) -> None:
    tickers = [f"T{i}" for i in range(500)]
    body = make_sim().get("/quotes?tickers=" + ",".join(tickers)).json()
    assert [q["ticker"] for q in body["quotes"]] == tickers and body["unknown"] == []


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("", "required"),
        ("?tickers=", "required"),
        ("?ticker=AAPL", "required"),
        ("?tickers=AAPL,,MSFT", "empty item"),
        ("?tickers=AAPL,", "empty item"),
        ("?tickers=,", "empty item"),
        ("?tickers=AAPL&tickers=", "empty item"),
        ("?tickers=" + ",".join(f"T{i}" for i in range(501)), "at most 500"),
    ],
)
def test_batch_quote_bad_request(make_sim: Callable[..., Sim], query: str, detail: str) -> None:
    sim = make_sim()
    response = sim.get(f"/quotes{query}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert detail in response.json()["detail"]
    assert sim.stats()["bad_requests"] == 1


def test_batch_quote_only_answers_get(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim()
    response = sim.post("/quotes?tickers=AAPL", {})
    assert response.status_code == 405 and response.json() == {"error": "method_not_allowed"}


# --- orders and callbacks -------------------------------------------------------------------


def test_submit_then_signed_callback(make_sim: Callable[..., Sim], make_receiver) -> None:
    sim, receiver = make_sim(), make_receiver()
    body = order_body(receiver.url)
    response = sim.post("/orders", body)
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "open"
    assert accepted["client_order_id"] == body["client_order_id"]
    assert accepted["exchange_order_id"].startswith("X-")

    [callback] = receiver.wait_for(1)
    assert callback.headers["webhook-id"] == f"msg_{accepted['exchange_order_id']}"
    assert callback.headers["webhook-signature"].startswith("v1,")
    event = verified(callback)
    assert event["type"] == "order.filled"
    assert datetime.fromisoformat(event["timestamp"]).utcoffset() == timedelta(0)
    data = event["data"]
    assert data["client_order_id"] == body["client_order_id"]
    assert data["exchange_order_id"] == accepted["exchange_order_id"]
    assert (data["status"], data["ticker"], data["side"], data["quantity"]) == (
        "filled",
        "AAPL",
        "buy",
        10,
    )
    assert Decimal(data["fill_price"]) > 0 and len(data["fill_price"].split(".")[1]) == 4
    assert datetime.fromisoformat(data["executed_at"]).tzinfo is not None
    assert data["reason"] is None
    assert sim.order(body["client_order_id"]) == data

    stats = sim.wait_quiet()
    assert (stats["orders_received"], stats["fills"], stats["callbacks_delivered"]) == (1, 1, 1)
    [control] = sim.get("/_control/orders").json()
    assert control["account_id"] == "acct-1"
    assert control["sequence"] == body["sequence"]
    assert control["callback_delivered_at"] is not None
    assert control["finished_at"] is not None and control["received_at"] is not None


def test_signs_with_first_of_several_secrets(make_sim: Callable[..., Sim], make_receiver) -> None:
    sim, receiver = make_sim(secret=f"{SECRET} {OTHER_SECRET}"), make_receiver()
    sim.post("/orders", order_body(receiver.url))
    [callback] = receiver.wait_for(1)
    assert verified(callback, SECRET)["type"] == "order.filled"


def test_resubmission_is_idempotent(make_sim: Callable[..., Sim], make_receiver) -> None:
    sim, receiver = make_sim(), make_receiver()
    body = order_body(receiver.url)
    first = sim.post("/orders", body)
    again = sim.post("/orders", body)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["exchange_order_id"] == first.json()["exchange_order_id"]

    filled = sim.wait_final(body["client_order_id"])
    late = sim.post("/orders", {**body, "max_price": "1.0000", "sequence": 999})
    assert late.status_code == 200
    assert late.json() == filled

    stats = sim.wait_quiet()
    assert stats["orders_received"] == 1
    assert stats["duplicate_submissions"] == 2
    assert stats["fills"] == 1
    assert stats["out_of_order"] == 0
    assert receiver.count() == 1


@pytest.mark.parametrize(
    "change", [{"ticker": "MSFT"}, {"side": "sell"}, {"quantity": 11}, {"account_id": "acct-2"}]
)
def test_conflicting_resubmission(make_sim: Callable[..., Sim], change: dict[str, Any]) -> None:
    sim = make_sim()
    body = order_body(None)
    assert sim.post("/orders", body).status_code == 202
    response = sim.post("/orders", {**body, **change})
    assert response.status_code == 409
    assert response.json()["error"] == "client_order_id_conflict"
    assert sim.stats()["orders_received"] == 1


def test_buy_above_max_price_is_rejected(make_sim: Callable[..., Sim], make_receiver) -> None:
    sim, receiver = make_sim(), make_receiver()
    body = order_body(receiver.url, max_price="1.0000")
    sim.post("/orders", body)
    [callback] = receiver.wait_for(1)
    event = verified(callback)
    assert event["type"] == "order.rejected"
    assert event["data"]["status"] == "rejected"
    assert event["data"]["reason"] == "price protection"
    assert event["data"]["fill_price"] is None and event["data"]["executed_at"] is None
    assert sim.stats()["rejections"] == 1


def test_sell_below_min_price_is_rejected(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim()
    body = order_body(None, side="sell", min_price="99999.0000")
    del body["max_price"]
    assert sim.post("/orders", body).status_code == 202
    assert sim.wait_final(body["client_order_id"])["reason"] == "price protection"
    plain = order_body(None, side="sell")
    del plain["max_price"]
    sim.post("/orders", plain)
    assert sim.wait_final(plain["client_order_id"])["status"] == "filled"


def test_reject_rate_and_market_hours(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim(reject_rate=1.0)
    body = order_body(None)
    sim.post("/orders", body)
    assert sim.wait_final(body["client_order_id"])["reason"] == "rejected by exchange"

    now = datetime.now(UTC)
    closed = f"{now + timedelta(hours=2):%H:%M}-{now + timedelta(hours=3):%H:%M}"
    sim.post("/_control/faults", {"reject_rate": 0, "market_hours": closed})
    body = order_body(None)
    sim.post("/orders", body)
    assert sim.wait_final(body["client_order_id"])["reason"] == "market closed"

    open_now = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=1):%H:%M}"
    sim.post("/_control/faults", {"market_hours": open_now})
    body = order_body(None)
    sim.post("/orders", body)
    assert sim.wait_final(body["client_order_id"])["status"] == "filled"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"client_order_id": None}, "invalid_request"),
        ({"account_id": ""}, "invalid_request"),
        ({"sequence": "3"}, "invalid_request"),
        ({"quantity": 0}, "invalid_request"),
        ({"quantity": True}, "invalid_request"),
        ({"side": "short"}, "invalid_request"),
        ({"max_price": None}, "invalid_request"),
        ({"max_price": 101.5}, "invalid_request"),
        ({"max_price": "abc"}, "invalid_request"),
        ({"max_price": "-1"}, "invalid_request"),
        ({"ticker": "nope"}, "unknown_ticker"),
        ({"callback_url": "ftp://x"}, "invalid_request"),
    ],
)
def test_bad_order_body(make_sim: Callable[..., Sim], change: dict[str, Any], error: str) -> None:
    sim = make_sim()
    response = sim.post("/orders", order_body(None, **change))
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["detail"]
    assert sim.stats()["orders_received"] == 0


def test_invalid_json_and_unknown_routes(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim()
    response = sim.http.post(sim.url + "/orders", data=b"{not json", timeout=5)
    assert response.status_code == 400 and response.json()["error"] == "invalid_json"
    assert sim.get("/nowhere").status_code == 404
    assert sim.http.delete(sim.url + "/orders/x", timeout=5).status_code == 405
    unknown = sim.get("/orders/never-seen")
    assert unknown.status_code == 404 and unknown.json() == {"status": "unknown"}


# --- faults ---------------------------------------------------------------------------------


def test_outage_answers_503_and_records_nothing(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim()
    config = sim.post("/_control/faults", {"outage": True}).json()
    assert config["outage"] is True and config["fill_delay_ms"] == "1,5"
    body = order_body(None)
    response = sim.post("/orders", body)
    assert response.status_code == 503 and response.json() == {"error": "unavailable"}
    assert sim.get("/quotes/AAPL").status_code == 200
    assert sim.get("/quotes?tickers=AAPL").status_code == 200
    assert sim.get(f"/orders/{body['client_order_id']}").status_code == 404
    assert sim.get("/_control/orders").json() == []
    assert sim.stats()["unavailable"] == 1

    sim.post("/_control/faults", {"outage": False})
    assert sim.post("/orders", body).status_code == 202


def test_outage_window_since_start(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim(outage_windows="0-3600")
    assert sim.post("/orders", order_body(None)).status_code == 503
    sim.post("/_control/faults", {"outage_windows": "3000-3600"})
    assert sim.post("/orders", order_body(None)).status_code == 202


def test_fault_control_validation(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim()
    bad = sim.post("/_control/faults", {"duplicate_rate": 2})
    assert bad.status_code == 400 and "duplicate_rate" in bad.json()["detail"]
    unknown = sim.post("/_control/faults", {"explode": True})
    assert unknown.status_code == 400
    assert sim.get("/_control/faults").json()["duplicate_rate"] == 0.0


def test_duplicate_rate_delivers_twice(make_sim: Callable[..., Sim], make_receiver) -> None:
    sim, receiver = make_sim(duplicate_rate=1.0), make_receiver()
    sim.post("/orders", order_body(receiver.url))
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert verified(first) == verified(second)
    stats = sim.wait_quiet()
    assert stats["callbacks_delivered"] == 2 and stats["callbacks_duplicated"] == 1
    assert receiver.count() == 2


def test_lose_first_is_delivered_by_retry(make_sim: Callable[..., Sim], make_receiver) -> None:
    sim, receiver = make_sim(lose_first_rate=1.0), make_receiver()
    sim.post("/orders", order_body(receiver.url))
    [callback] = receiver.wait_for(1)
    assert verified(callback)["type"] == "order.filled"
    stats = sim.wait_quiet()
    assert stats["callbacks_dropped"] == 1
    assert stats["callbacks_attempted"] == 2
    assert stats["callbacks_delivered"] == 1
    assert receiver.count() == 1


def test_no_callback_only_polling_tells(make_sim: Callable[..., Sim], make_receiver) -> None:
    sim, receiver = make_sim(no_callback_rate=1.0), make_receiver()
    body = order_body(receiver.url)
    sim.post("/orders", body)
    assert sim.wait_final(body["client_order_id"])["status"] == "filled"
    stats = sim.wait_quiet()
    assert stats["callbacks_suppressed"] == 1 and stats["callbacks_attempted"] == 0
    assert receiver.count() == 0


def test_failing_receiver_is_retried(make_sim: Callable[..., Sim], make_receiver) -> None:
    sim, receiver = make_sim(), make_receiver(statuses=[500, 503])
    sim.post("/orders", order_body(receiver.url))
    attempts = receiver.wait_for(3)
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    for attempt in attempts:
        verified(attempt)
    assert attempts[2].at - attempts[1].at >= 0.09  # backoff doubles from 50 ms
    stats = sim.wait_quiet()
    assert (stats["callbacks_failed"], stats["callbacks_delivered"]) == (2, 1)
    [control] = sim.get("/_control/orders").json()
    assert control["callback_delivered_at"] is not None


def test_unreachable_receiver_is_eventually_abandoned(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim(give_up_after=0.3)
    sim.post("/orders", order_body("http://127.0.0.1:9/unreachable"))
    stats = sim.wait_quiet()
    assert stats["callbacks_abandoned"] == 1
    assert stats["callbacks_failed"] >= 2
    assert stats["callbacks_delivered"] == 0


def test_delay_and_reorder_still_deliver_everything(
    make_sim: Callable[..., Sim], make_receiver
) -> None:
    sim, receiver = make_sim(callback_delay_ms=50, reorder_rate=1.0), make_receiver()
    started = time.monotonic()
    bodies = [order_body(receiver.url) for _ in range(5)]
    for body in bodies:
        sim.post("/orders", body)
    received = receiver.wait_for(5)
    assert min(r.at for r in received) - started >= 0.05
    ids = {verified(r)["data"]["client_order_id"] for r in received}
    assert ids == {b["client_order_id"] for b in bodies}


def test_slow_ms_delays_responses_but_not_control(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim(slow_ms=500)
    started = time.monotonic()
    sim.get("/quotes/AAPL")
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    sim.get("/quotes?tickers=AAPL,MSFT,TSLA")
    assert 0.5 <= time.monotonic() - started < 0.9  # once per request, not per ticker
    started = time.monotonic()
    sim.stats()
    assert time.monotonic() - started < 0.4


# --- ordering checks ------------------------------------------------------------------------


def test_ordering_counters(make_sim: Callable[..., Sim]) -> None:
    sim = make_sim(fill_delay_ms=(300, 300))
    # Well-behaved account: one order at a time, increasing sequence.
    good1 = order_body(None, account_id="good", sequence=1)
    sim.post("/orders", good1)
    sim.wait_final(good1["client_order_id"])
    sim.post("/orders", order_body(None, account_id="good", sequence=2))
    assert (sim.stats()["out_of_order"], sim.stats()["overlapping"]) == (0, 0)

    # Badly-behaved account: second order while the first is open, with a lower sequence.
    sim.post("/orders", order_body(None, account_id="bad", sequence=5))
    sim.post("/orders", order_body(None, account_id="bad", sequence=4))
    stats = sim.stats()
    assert (stats["out_of_order"], stats["overlapping"]) == (1, 1)

    sim.wait_quiet()
    sim.post("/orders", order_body(None, account_id="bad", sequence=5))  # reused number
    stats = sim.stats()
    assert (stats["out_of_order"], stats["overlapping"]) == (2, 1)


def test_concurrent_load(make_sim: Callable[..., Sim], make_receiver) -> None:
    sim, receiver = make_sim(), make_receiver()
    per_account = 40
    accounts = [f"load-{i}" for i in range(8)]

    def run(account: str) -> None:
        with requests.Session() as http:

            def finished(client_order_id: str) -> bool:
                url = f"{sim.url}/orders/{client_order_id}"
                return http.get(url, timeout=5).json()["status"] != "open"

            for seq in range(1, per_account + 1):
                body = order_body(receiver.url, account_id=account, sequence=seq)
                response = http.post(sim.url + "/orders", json=body, timeout=5)
                assert response.status_code == 202
                wait_until(functools.partial(finished, body["client_order_id"]), what="fill")

    with ThreadPoolExecutor(len(accounts)) as pool:
        list(pool.map(run, accounts))
    total = per_account * len(accounts)
    receiver.wait_for(total, timeout=10)
    stats = sim.wait_quiet()
    assert stats["orders_received"] == stats["fills"] == stats["callbacks_delivered"] == total
    assert (stats["out_of_order"], stats["overlapping"]) == (0, 0)
    payloads = [json.loads(r.body) for r in receiver.requests]
    assert len({p["data"]["client_order_id"] for p in payloads}) == total


def test_a_client_that_resets_its_connection_is_logged_not_traced(make_sim, caplog, capsys):
    sim = make_sim()
    host, port = sim.simulator.url.removeprefix("http://").split(":")
    caplog.set_level(logging.INFO, logger="exchange_simulator")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(b"GET /quotes/AA")  # half a request line, then a reset
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    wait_until(
        lambda: any("client_gone" in r.getMessage() for r in caplog.records),
        5,
        "the simulator to notice the reset",
    )
    assert "Traceback" not in capsys.readouterr().err
    assert sim.get("/quotes/AAPL").status_code == 200
