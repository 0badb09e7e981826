"""Settling what the exchange reports: the one settlement path, used by the callback, the
reaper and a leader booking a refused order.

Lock order, as everywhere: the customer's account row, then the trade row, then position."""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, connection, transaction

from balances import services as balances
from balances.money import MAX_CASH, PRICE_TICK, fill_amount, price_in_range
from brokerage.metrics import PLACE_TO_FILL_SECONDS, TRADES_FILLED, TRADES_REJECTED
from execution.exchange_client import OrderRequest, OrderState
from outbox.services import outbox_enqueue
from trades.models import EXCHANGE_ORDER_ID_LENGTH, Trade
from trades.services import log_transition, trade_transition
from trades.sql import HAS_PLACED_TRADE

logger = logging.getLogger("execution.settlement")

# How the reason of an order the exchange refused outright begins (see rejected_report).
REFUSED_BY_EXCHANGE = "refused by exchange"

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
    "created_at",
    "cash_held",
    "limit_price",
]
# The account row (found from the trade, whose customer never changes), then the trade
# row: locked in that order, as everywhere, because the materialized CTE is scanned first.
# With the database's clock once both are held (see execution.in_flight).
_LOCK_ACCOUNT_AND_TRADE_SQL = """
WITH account AS MATERIALIZED (
    SELECT customer_id, shard FROM balances_account
    WHERE customer_id = (SELECT customer_id FROM trades_trade WHERE id = %(trade_id)s)
    FOR UPDATE
)
SELECT account.shard, clock_timestamp(), t.* FROM account CROSS JOIN LATERAL (
    SELECT id, customer_id, seq, ticker, side, quantity, status, created_at, cash_held,
           limit_price
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
            trade_transition(
                trade,
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
            trade_transition(
                trade,
                Trade.Status.REJECTED,
                reason=(report.reason or "rejected by exchange")[:200],
                finished_at=now,
                exchange_order_id=report.exchange_order_id,
            )
        outbox_enqueue(customer_id=customer_id, shard=shard, only_if=HAS_PLACED_TRADE)
    if price is not None:
        TRADES_FILLED.labels(side=trade.side).inc()
        PLACE_TO_FILL_SECONDS.observe((now - trade.created_at).total_seconds())
    else:
        refused = (report.reason or "").startswith(REFUSED_BY_EXCHANGE)
        reason = "refused_by_exchange" if refused else "rejected_by_exchange"
        TRADES_REJECTED.labels(reason=reason).inc()
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
