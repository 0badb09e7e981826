from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Now

from balances.models import Account
from trades.models import Ticker, Trade
from trades.sql import OPEN_STATUSES

_NEXT_TRADE_TICKERS_SQL = f"""
SELECT DISTINCT t.ticker FROM unnest(%s::bigint[]) AS c(customer_id) CROSS JOIN LATERAL (
    SELECT ticker FROM trades_trade
    WHERE customer_id = c.customer_id AND status IN {OPEN_STATUSES}
    ORDER BY seq LIMIT 1
) AS t
"""

_TICKER_CACHE_SECONDS = 60.0
_tickers: frozenset[str] = frozenset()
_tickers_loaded_at = float("-inf")


def ticker_is_tradable(symbol: str) -> bool:
    """Whether `symbol` is an active ticker. The reference table is small and changes
    rarely, so each process keeps it in memory for a minute."""
    global _tickers, _tickers_loaded_at
    now = time.monotonic()
    if now - _tickers_loaded_at > _TICKER_CACHE_SECONDS:
        _tickers = frozenset(Ticker.objects.filter(active=True).values_list("symbol", flat=True))
        _tickers_loaded_at = now
    return symbol in _tickers


def ticker_cache_clear() -> None:
    global _tickers_loaded_at
    _tickers_loaded_at = float("-inf")


# A status filter may also name a group of statuses.
STATUS_GROUPS: dict[str, tuple[str, ...]] = {
    "open": tuple(Trade.OPEN),
    "closed": (Trade.Status.FILLED, Trade.Status.REJECTED, Trade.Status.CANCELLED),
}


def trade_list_for_customer(
    *,
    customer_id: int,
    status: str | None = None,
    ticker: str | None = None,
    side: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    client_order_id: str | None = None,
) -> QuerySet[Trade]:
    """The customer's trades, narrowed by each filter given (`status` may be a group)."""
    trades = Trade.objects.filter(customer_id=customer_id)
    if status:
        trades = trades.filter(status__in=STATUS_GROUPS.get(status, (status,)))
    if ticker:
        trades = trades.filter(ticker_id=ticker)
    if side:
        trades = trades.filter(side=side)
    if created_after:
        trades = trades.filter(created_at__gt=created_after)
    if created_before:
        trades = trades.filter(created_at__lt=created_before)
    if client_order_id:
        trades = trades.filter(client_order_id=client_order_id)
    return trades


def ticker_list(*, search: str | None = None, active: bool | None = None) -> QuerySet[Ticker]:
    """Tickers whose symbol starts with, or whose name contains, `search`."""
    tickers = Ticker.objects.all()
    if search:
        tickers = tickers.filter(Q(symbol__istartswith=search) | Q(name__icontains=search))
    if active is not None:
        tickers = tickers.filter(active=active)
    return tickers


def trade_get_for_customer(*, customer_id: int, trade_id: int) -> Trade | None:
    return Trade.objects.filter(customer_id=customer_id, id=trade_id).first()


def trades_in_flight_in_shards(
    *, shards: list[int], sent_within: timedelta, limit: int
) -> QuerySet[Trade]:
    """The trades of the customers in `shards` that went in flight within `sent_within`
    by the database's clock (the one they are stamped with), oldest first, at most
    `limit` (found through the in-flight index, not the accounts)."""
    in_shards = Account.objects.filter(customer_id=OuterRef("customer_id"), shard__in=shards)
    return Trade.objects.filter(
        Exists(in_shards), status=Trade.Status.IN_PROGRESS, submitted_at__gt=Now() - sent_within
    ).order_by("submitted_at")[:limit]


def next_trade_tickers(*, customer_ids: list[int]) -> set[str]:
    """The tickers of these customers' next trades (their oldest open ones). Read without
    locks: only to ask the exchange for the quotes a batch needs in one request."""
    with connection.cursor() as cursor:
        cursor.execute(_NEXT_TRADE_TICKERS_SQL, [customer_ids])
        return {row[0] for row in cursor.fetchall()}
