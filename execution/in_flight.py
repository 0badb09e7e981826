"""Putting a customer's next trade in flight: the transaction before an order goes to the
exchange. It holds the cash or shares and marks the trade `in_progress` (or rejects it);
the order itself is sent after the commit, by execution.submitter.

Lock order, as everywhere: the customer's account row, then the trade row, then position."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction

from balances import services as balances
from balances.money import buy_hold, usable_limit_price
from brokerage.metrics import TRADES_REJECTED, TRADES_SENT
from execution.exchange_client import OrderRequest
from outbox.fencing import LEASE_EPOCH_SQL, check_epoch
from outbox.services import outbox_enqueue
from trades.models import Trade
from trades.services import log_transition, trade_transition
from trades.sql import HAS_PLACED_TRADE, OPEN_STATUSES

logger = logging.getLogger("execution.in_flight")

INSUFFICIENT_FUNDS = "insufficient funds"
INSUFFICIENT_SHARES = "insufficient shares"
NOT_LISTED = "not traded at the exchange"
QUOTE_OUT_OF_RANGE = "quote out of range"

# One round trip for the start of a leader's transaction: take the customer's outbox rows,
# share-lock the lease row and read the epoch (see outbox.fencing), lock the account row,
# then the customer's oldest open trade by sequence number (the materialized CTE is
# scanned first, so the locks come in the usual order). A stale epoch rolls it all back.
# Trades are stamped with the database's clock, read once the locks are held: the next
# trade's submitted_at is then always after the previous one's finished_at, whichever
# hosts the leader and the callback run on (the audit checks it).
_TAKE_CUSTOMER_SQL = f"""
WITH taken AS (
    DELETE FROM outbox_outboxmessage
    WHERE shard = %(shard)s AND customer_id = %(customer_id)s
), account AS MATERIALIZED (
    SELECT {LEASE_EPOCH_SQL} AS epoch, a.customer_id FROM balances_account a
    WHERE a.customer_id = %(customer_id)s FOR UPDATE OF a
)
SELECT account.epoch, clock_timestamp(), t.id, t.status, t.ticker, t.side, t.quantity, t.seq
FROM account LEFT JOIN LATERAL (
    SELECT id, status, ticker, side, quantity, seq FROM trades_trade
    WHERE customer_id = account.customer_id AND status IN {OPEN_STATUSES}
    ORDER BY seq LIMIT 1 FOR UPDATE
) AS t ON true
"""


class QuoteNeeded(Exception):
    """The customer's next trade needs a quote the caller has not supplied."""

    def __init__(self, ticker: str) -> None:
        super().__init__(ticker)
        self.ticker = ticker


@dataclass(frozen=True)
class NextTrade:
    id: int
    status: str
    ticker: str
    side: str
    quantity: int
    seq: int


def order_request_for(trade: Trade) -> OrderRequest:
    """What we send the exchange for an in-flight trade; the trade id is the idempotency key."""
    is_buy = trade.side == Trade.Side.BUY
    return OrderRequest(
        client_order_id=str(trade.id),
        account_id=str(trade.customer_id),
        sequence=trade.seq,
        ticker=trade.ticker_id,
        side="buy" if is_buy else "sell",
        quantity=trade.quantity,
        max_price=trade.limit_price if is_buy else None,
        min_price=None if is_buy else trade.limit_price,
        callback_url=settings.CALLBACK_URL,
    )


def trade_put_in_flight(
    *, shard: int, epoch: int, customer_id: int, quotes: Mapping[str, Decimal | None]
) -> OrderRequest | None:
    """Take the customer's outbox rows and move their next trade towards the exchange.

    One transaction, fenced by the shard's epoch: deletes the customer's outbox rows in
    the shard, locks the account row, then the oldest open trade. Nothing to do if there
    is none or it is already in flight (one trade in flight per customer). A placed trade
    is held for (cash: quantity × quote × (1 + collar); shares: the quantity) and marked
    `in_progress`, or rejected if the customer is short, in which case the customer gets a
    fresh outbox row if another trade of theirs is waiting. Returns the order to submit
    after the commit, or None. Raises QuoteNeeded (rolling back) if `quotes` lacks the
    ticker; a ticker quoted as None (the exchange does not list it), or at a price that
    gives no limit we can send and store, is rejected.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_TAKE_CUSTOMER_SQL, {"shard": shard, "customer_id": customer_id})
            row = cursor.fetchone()
        if row is None:
            raise balances.NoAccount()
        check_epoch(shard=shard, mine=epoch, current=row[0])
        now = row[1]
        nxt = NextTrade(*row[2:]) if row[2] is not None else None
        if nxt is None or nxt.status == Trade.Status.IN_PROGRESS:
            return None
        try:
            quote = quotes[nxt.ticker]  # one look: a quote may expire meanwhile
        except KeyError:
            raise QuoteNeeded(nxt.ticker) from None
        is_buy = nxt.side == Trade.Side.BUY
        hold = limit = None
        if quote is not None:
            limit = usable_limit_price(is_buy=is_buy, quote=quote, collar=settings.PRICE_COLLAR)
        if quote is None:
            held, shortfall = False, NOT_LISTED
        elif limit is None:
            held, shortfall = False, QUOTE_OUT_OF_RANGE
        elif is_buy:
            hold = buy_hold(quantity=nxt.quantity, limit_price=limit)
            held = balances.cash_hold(customer_id=customer_id, amount=hold)
            shortfall = INSUFFICIENT_FUNDS
        else:
            held = balances.shares_hold(
                customer_id=customer_id, ticker=nxt.ticker, quantity=nxt.quantity
            )
            shortfall = INSUFFICIENT_SHARES

        trade = Trade(id=nxt.id, customer_id=customer_id, status=nxt.status)
        if not held:
            trade_transition(trade, Trade.Status.REJECTED, reason=shortfall, finished_at=now)
            outbox_enqueue(customer_id=customer_id, shard=shard, only_if=HAS_PLACED_TRADE)
            reason = shortfall.replace(" ", "_")
            transaction.on_commit(TRADES_REJECTED.labels(reason=reason).inc)
            log_transition(nxt.id, customer_id, shard, "rejected", reason=reason)
            return None
        # Built before the commit: an order we could not send must not be left in flight.
        order = order_request_for(
            Trade(
                id=nxt.id,
                customer_id=customer_id,
                seq=nxt.seq,
                ticker_id=nxt.ticker,
                side=nxt.side,
                quantity=nxt.quantity,
                limit_price=limit,
            )
        )
        trade_transition(
            trade, Trade.Status.IN_PROGRESS, submitted_at=now, cash_held=hold, limit_price=limit
        )
    TRADES_SENT.inc()
    log_transition(nxt.id, customer_id, shard, "in_progress", limit=limit)
    return order
