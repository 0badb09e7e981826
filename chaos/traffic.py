"""Customers and their traffic: client threads placing market orders over HTTP the way a
real client does (idempotency keys, retries with the same key, patience while the web is
down), with some orders that must be rejected, some cancels and some deliberate replays.
Each order goes through /api/v1/ or, for a share of them, Alpaca's /v2/: one customer's
orders mix both, and must still reach the exchange as one sequence."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import requests

# Tickers the soak trades; all are in trades/data/tickers.csv.
TICKERS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM")

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 10.0
MAX_BACKOFF = 2.0
# The share of orders placed (and then replayed or cancelled) through Alpaca's /v2/.
V2_SHARE = 0.3


@dataclass
class Customer:
    id: int
    token: str
    profile: str
    positions: dict[str, int]


@dataclass
class Order:
    key: str
    customer_id: int
    ticker: str
    side: str
    quantity: int
    # accepted (201 or a 200 replay of an attempt whose answer was lost), refused (4xx),
    # unanswered (no answer before the clients gave up), pending (not finished yet)
    outcome: str = "pending"
    trade_id: int | None = None
    status_code: int | None = None
    detail: str = ""
    attempts: int = 0
    cancel: str | None = None  # cancelled | not_cancellable | unanswered
    api: str = "v1"  # v1 (/api/v1/) or v2 (Alpaca's /v2/)


@dataclass
class Profile:
    name: str
    cash_cents: tuple[int, int]
    holds_shares: bool


PROFILES = (
    # Most customers can afford what they ask for; some never can, some own nothing to sell.
    (0.70, Profile("funded", (2_000_000, 30_000_000), True)),
    (0.15, Profile("poor", (500, 20_000), True)),
    (0.15, Profile("no_shares", (1_000_000, 10_000_000), False)),
)


def plan_customers(rng: random.Random, count: int) -> list[tuple[str, Decimal, dict[str, int]]]:
    """(profile, cash, positions) for each customer, drawn from the soak's random stream."""
    plans = []
    for _ in range(count):
        draw, profile = rng.random(), PROFILES[-1][1]
        for weight, candidate in PROFILES:
            if draw < weight:
                profile = candidate
                break
            draw -= weight
        cash = Decimal(rng.randint(*profile.cash_cents)).scaleb(-2)
        positions = {}
        if profile.holds_shares:
            for ticker in rng.sample(TICKERS, rng.randint(1, 3)):
                positions[ticker] = rng.randint(5, 200)
        plans.append((profile.name, cash, positions))
    return plans


def create_customers(plans: list[tuple[str, Decimal, dict[str, int]]]) -> list[Customer]:
    """Open the accounts through the ledger (as create_customer does), in one transaction."""
    from django.db import transaction

    from api_keys.services import api_key_issue
    from balances.services import account_open

    customers = []
    with transaction.atomic():
        for index, (profile, cash, positions) in enumerate(plans):
            account = account_open(username=f"chaos-{index:05d}", cash=cash, positions=positions)
            token = api_key_issue(customer_id=account.customer_id)
            customers.append(Customer(account.customer_id, token, profile, dict(positions)))
    return customers


@dataclass
class Traffic:
    """Shared state of all client threads: every order they sent, and counters."""

    web_url: str
    stop_placing: threading.Event = field(default_factory=threading.Event)
    give_up: threading.Event = field(default_factory=threading.Event)
    orders: list[Order] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    max_latency: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[name] += amount

    def record(self, order: Order) -> None:
        with self._lock:
            self.orders.append(order)

    def latency(self, seconds: float) -> None:
        with self._lock:
            self.max_latency = max(self.max_latency, seconds)


class Client(threading.Thread):
    """One client program serving some customers, placing `rate` orders per second."""

    def __init__(
        self,
        index: int,
        customers: list[Customer],
        traffic: Traffic,
        rng: random.Random,
        rate: float,
    ) -> None:
        super().__init__(name=f"client-{index}", daemon=True)
        self.index = index
        self.customers = customers
        self.traffic = traffic
        self.rng = rng
        self.interval = 1.0 / rate
        self.session = requests.Session()
        self.session.trust_env = False
        self.sequence = 0

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.traffic.stop_placing.is_set():
            customer = self.rng.choice(self.customers)
            # Mostly one order; sometimes a quick series, which must reach the exchange
            # in the customer's order.
            burst = 1 if self.rng.random() < 0.8 else self.rng.randint(2, 4)
            for _ in range(burst):
                self.place(customer)
            next_at = max(next_at + burst * self.interval, time.monotonic() - 2.0)
            # Pacing, not waiting for a condition: the next order is due at next_at.
            self.traffic.stop_placing.wait(max(0.0, next_at - time.monotonic()))
        self.session.close()

    # -- one order ---------------------------------------------------------------------

    def _terms(self, customer: Customer) -> tuple[str, str, int]:
        rng = self.rng
        if rng.random() < 0.45:
            owned = [t for t, q in customer.positions.items() if q > 0]
            if owned and rng.random() < 0.85:
                ticker = rng.choice(owned)
                # Now and then more than is owned: an insufficient-shares rejection.
                qty = rng.randint(1, 10) if rng.random() < 0.9 else rng.randint(300, 2000)
            else:
                ticker, qty = rng.choice(TICKERS), rng.randint(1, 10)
            return ticker, "sell", qty
        qty = rng.randint(1, 10) if rng.random() < 0.95 else rng.randint(2_000, 20_000)
        return rng.choice(TICKERS), "buy", qty

    def place(self, customer: Customer) -> None:
        ticker, side, quantity = self._terms(customer)
        self.sequence += 1
        order = Order(
            key=f"c{self.index}-{self.sequence}",
            customer_id=customer.id,
            ticker=ticker,
            side=side,
            quantity=quantity,
            api="v2" if self.rng.random() < V2_SHARE else "v1",
        )
        self.traffic.record(order)
        body = _placement(order)
        response = self._send(order, customer, "POST", PLACE_PATH[order.api], body)
        if response is None:
            order.outcome = "unanswered"
            return
        order.status_code = response.status_code
        if response.status_code in (200, 201):
            order.outcome = "accepted"
            order.trade_id = _trade_id(order, response)
            if order.api == "v2":
                self.traffic.count("placed_v2")  # Alpaca's API answers 200 either way
            else:
                self.traffic.count("created" if response.status_code == 201 else "replayed")
        else:
            order.outcome = "refused"
            order.detail = response.text[:200]
            self.traffic.count(f"refused_{response.status_code}")
            return
        if self.rng.random() < 0.03:
            self._replay(order, customer, body)
        if self.rng.random() < 0.08:
            self._cancel(order, customer)

    def _replay(self, order: Order, customer: Customer, body: dict) -> None:
        """Send the same order again on purpose: it must come back as the same trade."""
        response = self._send(order, customer, "POST", PLACE_PATH[order.api], body)
        if response is None:
            return
        same = response.status_code == 200 and _trade_id(order, response) == order.trade_id
        self.traffic.count("replays_same_trade" if same else "replays_new_trade")
        if not same:
            order.detail = f"replay answered {response.status_code}: {response.text[:150]}"

    def _cancel(self, order: Order, customer: Customer) -> None:
        assert order.trade_id is not None
        if order.api == "v2":
            path = f"/v2/orders/{uuid.UUID(int=order.trade_id)}"
            response = self._send(order, customer, "DELETE", path, None)
        else:
            path = f"/api/v1/trades/{order.trade_id}/cancel/"
            response = self._send(order, customer, "POST", path, None)
        if response is None:
            order.cancel = "unanswered"
        elif response.status_code in (200, 204):
            order.cancel = "cancelled"
        elif response.status_code in (409, 422):
            order.cancel = "not_cancellable"
        else:
            order.cancel = f"status {response.status_code}"
        self.traffic.count(f"cancel_{order.cancel}")

    def _send(
        self, order: Order, customer: Customer, method: str, path: str, body: dict | None
    ) -> requests.Response | None:
        """The request, retried on connection errors, timeouts, 5xx and 429 until answered
        or until the soak gives up; a retry of a placement carries the same key."""
        backoff = 0.1
        headers = {"Authorization": f"Token {customer.token}"}
        if order.api == "v2":
            headers = {
                "APCA-API-KEY-ID": customer.token[:12],
                "APCA-API-SECRET-KEY": customer.token,
            }
        while not self.traffic.give_up.is_set():
            order.attempts += 1
            self.traffic.count("requests")
            started = time.monotonic()
            try:
                response = self.session.request(
                    method,
                    self.traffic.web_url + path,
                    json=body,
                    headers=headers,
                    timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                )
            except requests.Timeout:
                self.traffic.count("timeouts")
                wait = backoff
            except requests.ConnectionError:
                self.traffic.count("connection_errors")
                wait = backoff
            else:
                self.traffic.latency(time.monotonic() - started)
                if response.status_code == 429:
                    self.traffic.count("rate_limited")
                    wait = min(float(response.headers.get("Retry-After", "1")), MAX_BACKOFF)
                elif response.status_code >= 500:
                    self.traffic.count(f"server_errors_{response.status_code}{_code(response)}")
                    wait = backoff
                else:
                    return response
            self.traffic.give_up.wait(wait * (0.5 + self.rng.random()))
            backoff = min(backoff * 2, MAX_BACKOFF)
        return None


PLACE_PATH = {"v1": "/api/v1/trades/", "v2": "/v2/orders"}


def _placement(order: Order) -> dict:
    """The order's body in its API's shape; a retry or replay sends it again unchanged."""
    if order.api == "v2":
        return {
            "symbol": order.ticker,
            "qty": str(order.quantity),
            "side": order.side,
            "type": "market",
            "time_in_force": "day",
            "client_order_id": order.key,
        }
    return {
        "ticker": order.ticker,
        "side": order.side,
        "quantity": order.quantity,
        "client_order_id": order.key,
    }


def _trade_id(order: Order, response: requests.Response) -> int | None:
    """The trade id of a placement's answer (Alpaca's order id is a UUID of it)."""
    value = response.json().get("id")
    if order.api == "v2" and isinstance(value, str):
        return uuid.UUID(value).int
    return value if isinstance(value, int) else None


def start_clients(
    customers: list[Customer],
    traffic: Traffic,
    rng: random.Random,
    *,
    threads: int,
    rate: float,
) -> list[Client]:
    """Split the customers over `threads` clients, each with its own seeded stream."""
    clients = []
    for index in range(threads):
        mine = customers[index::threads]
        client = Client(index, mine, traffic, random.Random(rng.getrandbits(64)), rate / threads)
        clients.append(client)
    for client in clients:
        client.start()
    return clients


def _code(response: requests.Response) -> str:
    """`_<error>` of a JSON error body (database_unavailable, …), or nothing."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return f"_{error}" if isinstance(error, str) else ""
