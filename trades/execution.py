"""Sending a customer's next trade to the exchange, and settling what the exchange reports.

Lock order, as everywhere: the customer's account row, then the trade row, then position.
Each function is one transaction and says what it locks and commits."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from balances import services as balances
from brokerage.errors import BrokerageError
from outbox.fencing import LEASE_EPOCH_SQL, check_epoch
from outbox.services import outbox_enqueue
from trades.exchange_client import OrderRequest, OrderState
from trades.models import EXCHANGE_ORDER_ID_LENGTH, Trade
from trades.pricing import (
    MAX_CASH,
    PRICE_TICK,
    buy_hold,
    fill_amount,
    price_in_range,
    usable_limit_price,
)
from trades.services import NO_ACCOUNT

logger = logging.getLogger("trades.execution")

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
    WHERE customer_id = account.customer_id AND status IN ('placed', 'in_progress')
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


def trade_send_next(
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
            raise BrokerageError("no_account", NO_ACCOUNT, status_code=403)
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
            fields = trade.transition_to(Trade.Status.REJECTED, reason=shortfall, finished_at=now)
            _save_fields(trade, fields)
            outbox_enqueue(customer_id=customer_id, shard=shard, only_if=HAS_PLACED_TRADE)
            log_transition(
                nxt.id, customer_id, shard, "rejected", reason=shortfall.replace(" ", "_")
            )
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
        fields = trade.transition_to(
            Trade.Status.IN_PROGRESS, submitted_at=now, cash_held=hold, limit_price=limit
        )
        _save_fields(trade, fields)
    log_transition(nxt.id, customer_id, shard, "in_progress", limit=limit)
    return order


# The customer needs their shard leader again only if a trade of theirs is waiting.
HAS_PLACED_TRADE = (
    "EXISTS (SELECT FROM trades_trade WHERE customer_id = %(customer_id)s AND status = 'placed')"
)

# Plain statements on the hot path: compiling the ORM's queries cost more CPU than the
# round trips they make.
# In the model's field order, as Model.from_db wants them.
_SETTLE_FIELDS = [
    "id",
    "customer_id",
    "seq",
    "ticker_id",
    "side",
    "quantity",
    "status",
    "cash_held",
    "limit_price",
]
# The account row (found from the trade, whose customer never changes), then the trade
# row: locked in that order, as everywhere, because the materialized CTE is scanned first.
# With the database's clock once both are held (see _TAKE_CUSTOMER_SQL).
_LOCK_ACCOUNT_AND_TRADE_SQL = """
WITH account AS MATERIALIZED (
    SELECT customer_id, shard FROM balances_account
    WHERE customer_id = (SELECT customer_id FROM trades_trade WHERE id = %(trade_id)s)
    FOR UPDATE
)
SELECT account.shard, clock_timestamp(), t.* FROM account CROSS JOIN LATERAL (
    SELECT id, customer_id, seq, ticker, side, quantity, status, cash_held, limit_price
    FROM trades_trade WHERE id = %(trade_id)s AND customer_id = account.customer_id
    FOR UPDATE
) AS t
"""


def _lock_account_and_trade(trade_id: int) -> tuple[int, datetime, Trade] | None:
    """(shard, the database's time, trade) with both rows locked, or None for an unknown
    trade."""
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_ACCOUNT_AND_TRADE_SQL, {"trade_id": trade_id})
        row = cursor.fetchone()
    if row is None:
        return None
    return row[0], row[1], Trade.from_db(connection.alias, _SETTLE_FIELDS, row[2:])


_COLUMNS = {field.name: field.column for field in Trade._meta.concrete_fields}


def _save_fields(trade: Trade, fields: list[str]) -> None:
    """UPDATE the named fields of the trade (the guard trigger checks the transition)."""
    columns = ", ".join(f"{_COLUMNS[name]} = %s" for name in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE trades_trade SET {columns} WHERE id = %s",
            [*(getattr(trade, name) for name in fields), trade.id],
        )


class SettleOutcome(enum.Enum):
    SETTLED = "settled"
    ALREADY_FINAL = "already_final"
    STILL_OPEN = "still_open"
    UNKNOWN_TRADE = "unknown_trade"


class ReportMismatch(Exception):
    """The exchange reported something that disagrees with the order we sent."""


def _sent(value: Decimal | None, trade: Trade, name: str) -> Decimal:
    """A term an in-flight trade went out with (CHECK trade_sent_has_terms keeps it set)."""
    if value is None:
        raise IntegrityError(f"trade {trade.id} is in flight without its {name}")
    return value


def _checked_fill_price(trade: Trade, report: OrderState) -> Decimal | None:
    """The price of a fill, None for a rejection. Raises ReportMismatch if the report
    disagrees with the order, or holds values that no settlement could store (which would
    otherwise fail it again on every retry)."""
    if len(report.exchange_order_id) > EXCHANGE_ORDER_ID_LENGTH:
        raise ReportMismatch(
            f"trade {trade.id}: exchange order id over {EXCHANGE_ORDER_ID_LENGTH} characters"
        )
    if (report.ticker, report.side, report.quantity) != (
        trade.ticker_id,
        trade.side,
        trade.quantity,
    ):
        raise ReportMismatch(
            f"trade {trade.id}: report says {report.side} {report.quantity} {report.ticker}, "
            f"we sent {trade.side} {trade.quantity} {trade.ticker_id}"
        )
    if report.status != Trade.Status.FILLED:
        return None
    price = report.fill_price
    if (
        price is None
        or not price_in_range(price)
        or price != price.quantize(PRICE_TICK)
        or not report.executed_at
    ):
        raise ReportMismatch(f"trade {trade.id}: a fill needs a price on the tick and a time")
    is_buy = trade.side == Trade.Side.BUY
    if fill_amount(is_buy=is_buy, quantity=trade.quantity, price=price) > MAX_CASH:
        raise ReportMismatch(f"trade {trade.id}: fill at {price} is worth more than cash holds")
    limit = _sent(trade.limit_price, trade, "price protection")
    if price > limit if is_buy else price < limit:
        raise ReportMismatch(
            f"trade {trade.id}: fill at {price} breaks the price protection {limit}"
        )
    return price


def trade_settle(*, report: OrderState) -> SettleOutcome:
    """Settle an in-flight trade from the exchange's final report; the one settlement path,
    used by the callback and the reaper.

    One transaction: locks the account row, then the trade row. A trade that is not
    `in_progress` is left alone (reports arrive at least once). A fill pays the cost and
    releases the buy's hold (or delivers the held shares and receives the proceeds), with
    one ledger entry per movement, and marks the trade `filled`; a rejection releases the
    hold and marks it `rejected`. Either way the customer gets an outbox row if another
    trade of theirs is waiting, so that it goes out. Raises ReportMismatch (changing
    nothing) if the report disagrees with the order."""
    if report.status not in (Trade.Status.FILLED, Trade.Status.REJECTED):
        return SettleOutcome.STILL_OPEN
    try:
        trade_id = int(report.client_order_id)
    except ValueError:
        return SettleOutcome.UNKNOWN_TRADE
    if not -(2**63) <= trade_id < 2**63:
        return SettleOutcome.UNKNOWN_TRADE
    with transaction.atomic():
        locked = _lock_account_and_trade(trade_id)
        if locked is None:
            return SettleOutcome.UNKNOWN_TRADE
        shard, now, trade = locked
        customer_id = trade.customer_id
        if trade.status != Trade.Status.IN_PROGRESS:
            return SettleOutcome.ALREADY_FINAL
        price = _checked_fill_price(trade, report)
        is_buy = trade.side == Trade.Side.BUY
        if price is not None:
            value = fill_amount(is_buy=is_buy, quantity=trade.quantity, price=price)
            if is_buy:
                balances.buy_settle(
                    customer_id=customer_id,
                    trade_id=trade.id,
                    ticker=trade.ticker_id,
                    quantity=trade.quantity,
                    cost=value,
                    hold=_sent(trade.cash_held, trade, "cash held"),
                )
            else:
                balances.sell_settle(
                    customer_id=customer_id,
                    trade_id=trade.id,
                    ticker=trade.ticker_id,
                    quantity=trade.quantity,
                    proceeds=value,
                )
            fields = trade.transition_to(
                Trade.Status.FILLED,
                fill_price=price,
                executed_at=report.executed_at,
                finished_at=now,
                exchange_order_id=report.exchange_order_id,
            )
        else:
            if is_buy:
                balances.cash_release(
                    customer_id=customer_id, amount=_sent(trade.cash_held, trade, "cash held")
                )
            else:
                balances.shares_release(
                    customer_id=customer_id, ticker=trade.ticker_id, quantity=trade.quantity
                )
            fields = trade.transition_to(
                Trade.Status.REJECTED,
                reason=(report.reason or "rejected by exchange")[:200],
                finished_at=now,
                exchange_order_id=report.exchange_order_id,
            )
        _save_fields(trade, fields)
        outbox_enqueue(customer_id=customer_id, shard=shard, only_if=HAS_PLACED_TRADE)
    log_transition(trade.id, customer_id, shard, trade.status, price=trade.fill_price)
    return SettleOutcome.SETTLED


def rejected_report(*, trade_id: int, reason: str, request: OrderRequest) -> OrderState:
    """A final 'rejected' report for an order the exchange refused outright (HTTP 400)."""
    return OrderState(
        client_order_id=str(trade_id),
        exchange_order_id="",
        status="rejected",
        ticker=request.ticker,
        side=request.side,
        quantity=request.quantity,
        fill_price=None,
        executed_at=None,
        reason=reason,
    )
