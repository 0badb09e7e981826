"""Business rules of a trade's life the customer drives: place and cancel.

Sending to the exchange and settling are in trades.execution.

Lock order, everywhere: the customer's account row, then their position row, then the
trade row. Every function here that writes is one transaction."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from brokerage.errors import BrokerageError, Conflict, NotFound, RateLimited
from outbox.services import outbox_enqueue
from trades.models import Trade

logger = logging.getLogger("trades.services")

NO_ACCOUNT = "This user has no brokerage account."
CLIENT_ORDER_ID_REUSED = "client_order_id {key!r} was already used for a different order."
NOT_CANCELLABLE = "Only a placed trade can be cancelled; this one is {status}."
TRADE_NOT_FOUND = "No such trade."
RATE_LIMITED = "Too many orders; try again in {wait} s."

# Locks the customer, takes their next sequence number and a token from their rate-limit
# bucket, in one statement; a refused request rolls all three back.
_LOCK_AND_NEXT_SEQ_SQL = """
UPDATE balances_account SET
    last_trade_seq = last_trade_seq + 1,
    rate_tokens = LEAST(
        %(burst)s, rate_tokens + EXTRACT(EPOCH FROM now() - rate_updated_at) * %(rate)s
    ) - 1,
    rate_updated_at = now()
WHERE customer_id = %(customer_id)s
RETURNING last_trade_seq, shard, rate_tokens
"""


@dataclass(frozen=True)
class PlaceResult:
    trade: Trade
    created: bool


class _Replay(Exception):
    def __init__(self, trade: Trade) -> None:
        self.trade = trade


def account_lock(*, customer_id: int) -> int:
    """Take the customer lock (the account row, FOR UPDATE); returns the customer's shard."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT shard FROM balances_account WHERE customer_id = %s FOR UPDATE", [customer_id]
        )
        row = cursor.fetchone()
    if row is None:
        raise BrokerageError("no_account", NO_ACCOUNT, status_code=403)
    return row[0]


def trade_place(
    *,
    customer_id: int,
    ticker: str,
    side: str,
    quantity: int,
    client_order_id: str | None = None,
) -> PlaceResult:
    """Accept a market order for the customer.

    One transaction: locks the customer's account row while taking their next sequence
    number, inserts the trade (`placed`) and an outbox row, and commits them together;
    the shard is woken after commit. A client_order_id seen before returns the original
    trade (same terms) or raises Conflict (different terms); either way nothing is written.
    """
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    _LOCK_AND_NEXT_SEQ_SQL,
                    {
                        "customer_id": customer_id,
                        "rate": settings.PLACE_TRADE_RATE,
                        "burst": settings.PLACE_TRADE_BURST,
                    },
                )
                row = cursor.fetchone()
            if row is None:
                raise BrokerageError("no_account", NO_ACCOUNT, status_code=403)
            seq, shard, tokens = row
            if tokens < 0:
                wait = math.ceil(-tokens / settings.PLACE_TRADE_RATE)
                raise RateLimited("rate_limited", RATE_LIMITED.format(wait=wait), retry_after=wait)
            if client_order_id is not None:
                existing = Trade.objects.filter(
                    customer_id=customer_id, client_order_id=client_order_id
                ).first()
                if existing is not None:
                    raise _Replay(existing)  # rolls back the sequence number too
            trade = Trade.objects.create(
                customer_id=customer_id,
                seq=seq,
                ticker_id=ticker,
                side=side,
                quantity=quantity,
                client_order_id=client_order_id,
            )
            outbox_enqueue(customer_id=customer_id, shard=shard)
    except _Replay as replay:
        original = replay.trade
        if (original.ticker_id, original.side, original.quantity) != (ticker, side, quantity):
            raise Conflict(
                "client_order_id_reused", CLIENT_ORDER_ID_REUSED.format(key=client_order_id)
            ) from None
        return PlaceResult(trade=original, created=False)
    logger.info(
        "event=trade_placed trade=%s customer=%s shard=%s seq=%s", trade.id, customer_id, shard, seq
    )
    return PlaceResult(trade=trade, created=True)


def trade_cancel(*, customer_id: int, trade_id: int) -> Trade:
    """Cancel the customer's trade if it is still `placed` (nothing is held for it yet).

    One transaction: locks the account row, then the trade row; raises NotFound for
    another customer's trade and Conflict for any state but `placed`."""
    with transaction.atomic():
        account_lock(customer_id=customer_id)
        trade = (
            Trade.objects.select_for_update().filter(customer_id=customer_id, id=trade_id).first()
        )
        if trade is None:
            raise NotFound("not_found", TRADE_NOT_FOUND)
        if trade.status != Trade.Status.PLACED:
            raise Conflict("trade_not_cancellable", NOT_CANCELLABLE.format(status=trade.status))
        trade.save(
            update_fields=trade.transition_to(
                Trade.Status.CANCELLED, reason="cancelled by customer", finished_at=timezone.now()
            )
        )
    return trade
