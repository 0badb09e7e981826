"""The simulated exchange: order book of record, idempotency, ordering checks, execution."""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from exchange_simulator.callbacks import CallbackDispatcher
from exchange_simulator.faults import FaultConfig
from exchange_simulator.market import Market, SharedRandom, is_listed, money
from exchange_simulator.scheduler import Scheduler
from exchange_simulator.stats import Stats

log = logging.getLogger("exchange_simulator")

MAX_ID_LENGTH = 200
MAX_TICKERS_PER_QUOTE = 500
MAX_PRICE = Decimal(10) ** 12
SIDES = ("buy", "sell")


class BadRequest(Exception):
    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


@dataclass(frozen=True)
class NewOrder:
    client_order_id: str
    account_id: str
    sequence: int
    ticker: str
    side: str
    quantity: int
    max_price: Decimal | None
    min_price: Decimal | None
    callback_url: str | None


@dataclass
class Order:
    request: NewOrder
    exchange_order_id: str
    received_at: datetime
    status: str = "open"
    fill_price: Decimal | None = None
    executed_at: datetime | None = None
    reason: str | None = None
    finished_at: datetime | None = None
    callback_delivered_at: datetime | None = None
    callback_deliveries: int = 0
    resubmissions: int = 0

    def public_view(self) -> dict[str, Any]:
        r = self.request
        return {
            "client_order_id": r.client_order_id,
            "exchange_order_id": self.exchange_order_id,
            "status": self.status,
            "ticker": r.ticker,
            "side": r.side,
            "quantity": r.quantity,
            "fill_price": money(self.fill_price) if self.fill_price is not None else None,
            "executed_at": _iso(self.executed_at),
            "reason": self.reason,
        }

    def control_view(self) -> dict[str, Any]:
        r = self.request
        return {
            **self.public_view(),
            "account_id": r.account_id,
            "sequence": r.sequence,
            "max_price": money(r.max_price) if r.max_price is not None else None,
            "min_price": money(r.min_price) if r.min_price is not None else None,
            "callback_url": r.callback_url,
            "received_at": _iso(self.received_at),
            "finished_at": _iso(self.finished_at),
            "callback_delivered_at": _iso(self.callback_delivered_at),
            "callback_deliveries": self.callback_deliveries,
            "resubmissions": self.resubmissions,
        }


@dataclass
class _Account:
    max_sequence: int
    open_orders: set[str] = field(default_factory=set)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _string(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("invalid_request", f"{key} is required and must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise BadRequest("invalid_request", f"{key} is longer than {MAX_ID_LENGTH} characters")
    return value


def _positive_int(payload: Mapping[str, Any], key: str, *, minimum: int) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        detail = f"{key} is required and must be an integer >= {minimum}"
        raise BadRequest("invalid_request", detail)
    return value


def _price(payload: Mapping[str, Any], key: str) -> Decimal | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("invalid_request", f'{key} must be a decimal string such as "12.3400"')
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise BadRequest("invalid_request", f"{key} is not a decimal: {value!r}") from None
    if not price.is_finite() or not Decimal(0) < price < MAX_PRICE:
        raise BadRequest("invalid_request", f"{key} must be a positive price, got {value!r}")
    return price


def parse_tickers(items: list[str] | None) -> list[str]:
    """Validate the tickers of ``GET /quotes?tickers=...`` (None: parameter absent).

    Raises :class:`BadRequest`; duplicates are kept, :meth:`Exchange.quotes` answers them once.
    """
    if not items or items == [""]:
        raise BadRequest(
            "invalid_request",
            f"tickers is required: 1 to {MAX_TICKERS_PER_QUOTE} comma-separated tickers",
        )
    if "" in items:
        raise BadRequest("invalid_request", "tickers has an empty item")
    if len(items) > MAX_TICKERS_PER_QUOTE:
        raise BadRequest(
            "invalid_request",
            f"at most {MAX_TICKERS_PER_QUOTE} tickers per request, got {len(items)}",
        )
    return items


def parse_new_order(payload: Any) -> NewOrder:
    """Validate a ``POST /orders`` body; raises :class:`BadRequest`."""
    if not isinstance(payload, dict):
        raise BadRequest("invalid_request", "body must be a JSON object")
    ticker = payload.get("ticker")
    if not isinstance(ticker, str) or not is_listed(ticker):
        raise BadRequest("unknown_ticker", f"ticker {ticker!r} is not listed")
    side = payload.get("side")
    if side not in SIDES:
        raise BadRequest("invalid_request", "side must be 'buy' or 'sell'")
    max_price = _price(payload, "max_price")
    min_price = _price(payload, "min_price")
    if side == "buy" and max_price is None:
        raise BadRequest("invalid_request", "max_price is required for a buy")
    callback_url = payload.get("callback_url")
    if callback_url is not None and (
        not isinstance(callback_url, str) or not callback_url.startswith(("http://", "https://"))
    ):
        raise BadRequest("invalid_request", "callback_url must be an http(s) URL")
    return NewOrder(
        client_order_id=_string(payload, "client_order_id"),
        account_id=_string(payload, "account_id"),
        sequence=_positive_int(payload, "sequence", minimum=0),
        ticker=ticker,
        side=side,
        quantity=_positive_int(payload, "quantity", minimum=1),
        max_price=max_price if side == "buy" else None,
        min_price=min_price if side == "sell" else None,
        callback_url=callback_url,
    )


class Exchange:
    """All simulator state, in memory. Thread-safe; HTTP-agnostic."""

    def __init__(
        self,
        *,
        seed: int,
        webhook_secret: str,
        faults: FaultConfig | None = None,
        callback_workers: int = 8,
        callback_connect_timeout: float = 1.0,
        callback_read_timeout: float = 5.0,
        callback_give_up_after: float = 600.0,
    ) -> None:
        self.seed = seed
        self.rng = SharedRandom(seed)
        self.market = Market(seed, self.rng)
        self.stats = Stats()
        self._faults = faults or FaultConfig()
        self._faults_lock = threading.Lock()
        self._lock = threading.Lock()
        self._orders: dict[str, Order] = {}
        self._accounts: dict[str, _Account] = {}
        # The run prefix keeps exchange ids (and so webhook ids) unique across restarts.
        self._run_id = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._started = time.monotonic()
        self.scheduler = Scheduler()
        self.dispatcher = CallbackDispatcher(
            secret=webhook_secret,
            scheduler=self.scheduler,
            rng=self.rng,
            stats=self.stats,
            faults=lambda: self.faults,
            on_delivered=self._callback_delivered,
            workers=callback_workers,
            connect_timeout=callback_connect_timeout,
            read_timeout=callback_read_timeout,
            give_up_after=callback_give_up_after,
        )

    def start(self) -> None:
        self._started = time.monotonic()
        self.scheduler.start()

    def stop(self) -> None:
        self.dispatcher.stop()
        self.scheduler.stop()

    @property
    def faults(self) -> FaultConfig:
        return self._faults

    def update_faults(self, changes: Mapping[str, Any]) -> FaultConfig:
        """Apply a partial update; raises ValueError and changes nothing if any value is bad."""
        with self._faults_lock:
            self._faults = self._faults.updated(changes)
            log.info("event=faults_updated changes=%s", dict(changes))
            return self._faults

    def uptime(self) -> float:
        return time.monotonic() - self._started

    def quote(self, ticker: str) -> dict[str, Any] | None:
        self.stats.incr("quotes")
        if not is_listed(ticker):
            return None
        price = self.market.tick(ticker)
        return {"ticker": ticker, "price": money(price), "as_of": datetime.now(UTC).isoformat()}

    def quotes(self, tickers: Iterable[str]) -> dict[str, Any]:
        """Quote each ticker once, in the order given, exactly as :meth:`quote` would."""
        self.stats.incr("quote_batches")
        listed: list[dict[str, Any]] = []
        unknown: list[str] = []
        for ticker in dict.fromkeys(tickers):
            quote = self.quote(ticker)
            if quote is None:
                unknown.append(ticker)
            else:
                listed.append(quote)
        return {"quotes": listed, "unknown": unknown}

    def submit_order(self, payload: Any) -> tuple[int, dict[str, Any]]:
        """Handle ``POST /orders``: returns (HTTP status, JSON body)."""
        if self.faults.in_outage(self.uptime()):
            self.stats.incr("unavailable")
            return 503, {"error": "unavailable"}
        try:
            new = parse_new_order(payload)
        except BadRequest as exc:
            self.stats.incr("bad_requests")
            return 400, {"error": exc.error, "detail": exc.detail}
        with self._lock:
            existing = self._orders.get(new.client_order_id)
            if existing is not None:
                return self._resubmission(existing, new)
            order = Order(
                request=new,
                exchange_order_id=f"X-{self._run_id}-{next(self._ids):08d}",
                received_at=datetime.now(UTC),
            )
            self._orders[new.client_order_id] = order
            out_of_order, overlapping = self._check_ordering(new)
            self.stats.incr("orders_received")
            view = order.public_view()
        log.info(
            "event=order_received client_order_id=%s exchange_order_id=%s account_id=%s "
            "sequence=%d ticker=%s side=%s quantity=%d",
            new.client_order_id,
            order.exchange_order_id,
            new.account_id,
            new.sequence,
            new.ticker,
            new.side,
            new.quantity,
        )
        if out_of_order is not None:
            log.warning(
                "event=out_of_order account_id=%s sequence=%d previous_max=%d",
                new.account_id,
                new.sequence,
                out_of_order,
            )
        if overlapping:
            log.warning(
                "event=overlapping account_id=%s client_order_id=%s open=%s",
                new.account_id,
                new.client_order_id,
                ",".join(sorted(overlapping)),
            )
        low, high = self.faults.fill_delay_ms
        delay = self.rng.uniform(low, high) / 1000
        self.scheduler.call_later(delay, lambda: self._execute(new.client_order_id))
        return 202, view

    def _resubmission(self, existing: Order, new: NewOrder) -> tuple[int, dict[str, Any]]:
        old = existing.request
        differing = [
            name
            for name in ("account_id", "ticker", "side", "quantity")
            if getattr(old, name) != getattr(new, name)
        ]
        if differing:
            self.stats.incr("conflicts")
            log.warning(
                "event=client_order_id_conflict client_order_id=%s differing=%s",
                new.client_order_id,
                ",".join(differing),
            )
            return 409, {
                "error": "client_order_id_conflict",
                "detail": f"client_order_id already used with a different {', '.join(differing)}",
            }
        existing.resubmissions += 1
        self.stats.incr("duplicate_submissions")
        log.info(
            "event=order_resubmitted client_order_id=%s status=%s",
            new.client_order_id,
            existing.status,
        )
        return 200, existing.public_view()

    def _check_ordering(self, new: NewOrder) -> tuple[int | None, set[str]]:
        """Record the order against its account; return (previous max sequence, open others).

        The first element is only set when the new sequence is not above every earlier one.
        Caller holds ``self._lock``.
        """
        account = self._accounts.get(new.account_id)
        if account is None:
            account = self._accounts[new.account_id] = _Account(max_sequence=new.sequence)
            out_of_order = None
        elif new.sequence <= account.max_sequence:
            out_of_order = account.max_sequence
        else:
            out_of_order = None
        overlapping = set(account.open_orders)
        if out_of_order is not None:
            self.stats.incr("out_of_order")
        if overlapping:
            self.stats.incr("overlapping")
        account.max_sequence = max(account.max_sequence, new.sequence)
        account.open_orders.add(new.client_order_id)
        return out_of_order, overlapping

    def _execute(self, client_order_id: str) -> None:
        """Fill or reject an open order (scheduler thread), then send its callback."""
        faults = self.faults
        now = datetime.now(UTC)
        with self._lock:
            order = self._orders[client_order_id]
            if order.status != "open":
                return
            req = order.request
            price: Decimal | None = None
            if faults.market_hours is not None and not faults.market_hours.is_open(now):
                order.status, order.reason = "rejected", "market closed"
            elif self.rng.chance(faults.reject_rate):
                order.status, order.reason = "rejected", "rejected by exchange"
            else:
                price = self.market.tick(req.ticker)
                if req.max_price is not None and price > req.max_price:
                    order.status, order.reason = "rejected", "price protection"
                elif req.min_price is not None and price < req.min_price:
                    order.status, order.reason = "rejected", "price protection"
                else:
                    order.status, order.fill_price, order.executed_at = "filled", price, now
            order.finished_at = now
            self._accounts[req.account_id].open_orders.discard(client_order_id)
            self.stats.incr("fills" if order.status == "filled" else "rejections")
            view = order.public_view()
        log.info(
            "event=order_%s client_order_id=%s exchange_order_id=%s ticker=%s side=%s "
            "quantity=%d price=%s reason=%s",
            order.status,
            client_order_id,
            order.exchange_order_id,
            req.ticker,
            req.side,
            req.quantity,
            money(price) if price is not None else "-",
            (order.reason or "-").replace(" ", "_"),
        )
        if req.callback_url:
            self.dispatcher.dispatch(
                client_order_id=client_order_id,
                exchange_order_id=order.exchange_order_id,
                callback_url=req.callback_url,
                event_type=f"order.{order.status}",
                timestamp=now,
                data=view,
            )

    def _callback_delivered(self, client_order_id: str, when: datetime) -> None:
        with self._lock:
            order = self._orders.get(client_order_id)
            if order is not None:
                order.callback_deliveries += 1
                if order.callback_delivered_at is None:
                    order.callback_delivered_at = when

    def get_order(self, client_order_id: str) -> dict[str, Any] | None:
        with self._lock:
            order = self._orders.get(client_order_id)
            return order.public_view() if order is not None else None

    def list_orders(self, account_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                o.control_view()
                for o in self._orders.values()
                if account_id is None or o.request.account_id == account_id
            ]

    def stats_snapshot(self) -> dict[str, Any]:
        snapshot: dict[str, Any] = self.stats.snapshot()
        with self._lock:
            snapshot["orders_total"] = len(self._orders)
            snapshot["open_orders"] = sum(len(a.open_orders) for a in self._accounts.values())
            snapshot["accounts"] = len(self._accounts)
        snapshot["scheduled_events"] = self.scheduler.pending()
        snapshot["uptime_seconds"] = round(self.uptime(), 3)
        snapshot["seed"] = self.seed
        return snapshot
