"""Business rules of a trade's life the customer drives: place and cancel.

Sending to the exchange and settling are in the execution app; every status change,
theirs too, is persisted by `trade_transition`.

Lock order, everywhere: the customer's account row, then the trade row, then their
position row. Every function here that writes is one transaction."""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from balances.services import AccountRestricted, NoAccount, account_lock, order_allowed
from brokerage.errors import Conflict, NotFound, RateLimited
from brokerage.metrics import TRADES_CANCELLED, TRADES_PLACED
from outbox.notify import customer_wake_on_commit, shard_waker
from trades.models import Trade
from trades.placement_sql import PLACE_TRADE_SQL, REFUSAL_SQL

logger = logging.getLogger("trades.services")

CLIENT_ORDER_ID_REUSED = "client_order_id {key!r} was already used for a different order."
NOT_CANCELLABLE = "Only a placed trade can be cancelled; this one is {status}."
TRADE_NOT_FOUND = "No such trade."
RATE_LIMITED = "Too many orders; try again in {wait} s."


_COLUMNS = {field.name: field.column for field in Trade._meta.concrete_fields}


def trade_transition(trade: Trade, new: str, **fields: object) -> None:
    """Move the trade to status `new` with `fields` set (refusing an illegal move) and
    UPDATE exactly those columns: the one way a trade changes status. A plain statement in
    the caller's transaction; the caller holds the trade's row lock (the database's guard
    trigger checks the move again)."""
    changed = trade.transition_to(new, **fields)
    customer_wake_on_commit(trade.customer_id)
    columns = ", ".join(f"{_COLUMNS[name]} = %s" for name in changed)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE trades_trade SET {columns} WHERE id = %s",
            [*(getattr(trade, name) for name in changed), trade.id],
        )


def log_transition(
    trade_id: int, customer_id: int, shard: int | None, status: str, **extra: object
) -> None:
    details = "".join(f" {key}={value}" for key, value in extra.items())
    logger.info(
        "event=trade_%s trade=%s customer=%s shard=%s%s",
        status,
        trade_id,
        customer_id,
        shard,
        details,
    )


@dataclass(frozen=True)
class PlaceResult:
    trade: Trade
    created: bool


def trade_place(
    *,
    customer_id: int,
    ticker: str,
    side: str,
    quantity: int,
    client_order_id: str | None = None,
) -> PlaceResult:
    """Accept a market order for the customer.

    One statement, so one transaction: locks the customer's account row while taking
    their next sequence number and a rate-limit token, inserts the trade (`placed`) and
    an outbox row; the shard is woken after commit. A client_order_id seen before returns
    the original trade (same terms) or raises Conflict (different terms); over the rate
    limit raises RateLimited; in every refusal nothing is written.
    """
    params = {
        "customer_id": customer_id,
        "ticker": ticker,
        "side": side,
        "quantity": quantity,
        "client_order_id": client_order_id,
        "rate": settings.PLACE_TRADE_RATE,
        "burst": settings.PLACE_TRADE_BURST,
    }
    # One statement is its own transaction; a savepoint only inside a caller's transaction.
    atomic = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with atomic, connection.cursor() as cursor:
            cursor.execute(PLACE_TRADE_SQL, params)
            row = cursor.fetchone()
    except IntegrityError as exc:
        if _violated_constraint(exc) != "trade_customer_client_order_id":
            raise
        row = None  # a concurrent request with the same client_order_id won
    if row is None:
        return _refused_placement(params)
    trade_id, seq, created_at, shard = row
    transaction.on_commit(lambda: _placed(shard, customer_id))
    logger.info(
        "event=trade_placed trade=%s customer=%s shard=%s seq=%s", trade_id, customer_id, shard, seq
    )
    trade = Trade(
        id=trade_id,
        customer_id=customer_id,
        seq=seq,
        ticker_id=ticker,
        side=side,
        quantity=quantity,
        status=Trade.Status.PLACED,
        client_order_id=client_order_id,
        created_at=created_at,
    )
    return PlaceResult(trade=trade, created=True)


def _placed(shard: int, customer_id: int) -> None:
    TRADES_PLACED.inc()
    waker = shard_waker()
    waker.wake(shard)
    waker.wake_customer(customer_id)


def trade_replayed_as_placed(
    *, customer_id: int, client_order_id: object, ticker: object, side: object, quantity: object
) -> Trade | None:
    """The trade placed earlier under `client_order_id` if the request repeats its terms
    exactly, judged by what was placed rather than by today's rules: a retry must get its
    order back even after staff deactivated the ticker or the maximum quantity was
    lowered. None if there is no such trade or the terms differ."""
    if not isinstance(client_order_id, str) or not isinstance(ticker, str):
        return None
    if not ticker.isascii() or type(quantity) is not int:
        return None
    original = _placed_under(customer_id, client_order_id)
    terms = (ticker.strip().upper(), side, quantity)
    return original if original is not None and _terms(original) == terms else None


def _placed_under(customer_id: int, client_order_id: str) -> Trade | None:
    return Trade.objects.filter(customer_id=customer_id, client_order_id=client_order_id).first()


def _terms(trade: Trade) -> tuple[str, str, int]:
    return trade.ticker_id, trade.side, trade.quantity


def _violated_constraint(exc: IntegrityError) -> str | None:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


def _refused_placement(params: dict) -> PlaceResult:
    """Nothing was written: say why, or return the original trade of a replayed key."""
    key = params["client_order_id"]
    if key is not None:
        original = _placed_under(params["customer_id"], key)
        if original is not None:
            if _terms(original) != (params["ticker"], params["side"], params["quantity"]):
                raise Conflict("client_order_id_reused", CLIENT_ORDER_ID_REUSED.format(key=key))
            return PlaceResult(trade=original, created=False)
    with connection.cursor() as cursor:
        cursor.execute(REFUSAL_SQL, params)
        row = cursor.fetchone()
    if row is None:
        raise NoAccount()
    tokens, status, reason = row
    if not order_allowed(status, params["side"]):
        raise AccountRestricted(status, reason)
    wait = max(1, math.ceil((1 - tokens) / params["rate"]))
    raise RateLimited("rate_limited", RATE_LIMITED.format(wait=wait), retry_after=wait)


CANCELLED_BY = {
    "customer": "cancelled by customer",
    "staff": "cancelled by support for the customer",
}


def trade_cancel(*, customer_id: int, trade_id: int, by: str = "customer") -> Trade:
    """Cancel the customer's trade if it is still `placed` (nothing is held for it yet),
    by the customer or by staff for them (support.trades).

    One transaction: locks the account row, then the trade row; raises NotFound for
    another customer's trade and Conflict for any state but `placed`."""
    with transaction.atomic():
        now = account_lock(customer_id=customer_id)
        trade = (
            Trade.objects.select_for_update().filter(customer_id=customer_id, id=trade_id).first()
        )
        if trade is None:
            raise NotFound("not_found", TRADE_NOT_FOUND)
        if trade.status != Trade.Status.PLACED:
            raise Conflict("trade_not_cancellable", NOT_CANCELLABLE.format(status=trade.status))
        trade_transition(trade, Trade.Status.CANCELLED, reason=CANCELLED_BY[by], finished_at=now)
    transaction.on_commit(lambda: TRADES_CANCELLED.labels(by=by).inc())
    return trade


def trade_cancel_all(*, customer_id: int) -> list[tuple[Trade, bool]]:
    """Cancel every trade of the customer still `placed`, in one transaction (account
    lock, then the open trades' rows); returns each open trade with whether it was
    cancelled (one already in flight is not: it fills or is rejected)."""
    with transaction.atomic():
        now = account_lock(customer_id=customer_id)
        open_trades = list(
            Trade.objects.select_for_update()
            .filter(customer_id=customer_id, status__in=Trade.OPEN)
            .order_by("seq")
        )
        outcomes = []
        for trade in open_trades:
            cancellable = trade.status == Trade.Status.PLACED
            if cancellable:
                trade_transition(
                    trade, Trade.Status.CANCELLED, reason=CANCELLED_BY["customer"], finished_at=now
                )
            outcomes.append((trade, cancellable))
    cancelled = sum(1 for _, done in outcomes if done)
    if cancelled:
        TRADES_CANCELLED.labels(by="customer").inc(cancelled)
    return outcomes
