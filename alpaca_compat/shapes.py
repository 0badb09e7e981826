"""Our trades, positions, tickers and account in the shapes of Alpaca's Trading API v2, and
back: one table of how each maps (docs/alpaca.md), in code.

Alpaca's ids are UUIDs: an order's is its trade id as a UUID's 128-bit number, an
account's the customer's id; an asset's is derived from its symbol."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from balances.models import LedgerEntry, Position
from trades.models import Ticker, Trade

ASSET_NAMESPACE = uuid.UUID("5b0f2a55-3e8e-4d3c-9a43-5f0c1b7a9e21")

# Ours → Alpaca's (docs/alpaca.md): a placed trade is accepted, not yet routed; in
# flight, it is new at the exchange.
ORDER_STATUS = {
    Trade.Status.PLACED: "accepted",
    Trade.Status.IN_PROGRESS: "new",
    Trade.Status.FILLED: "filled",
    Trade.Status.REJECTED: "rejected",
    Trade.Status.CANCELLED: "canceled",
}
OPEN_STATUSES = ("accepted", "new")


def order_id(trade_id: int) -> str:
    return str(uuid.UUID(int=trade_id))


def trade_id_of(text: str) -> int | None:
    """The trade id of an order id, or None if it is not one of ours."""
    try:
        value = uuid.UUID(text).int
    except ValueError:
        return None
    return value if value < 2**63 else None


def asset_id(symbol: str) -> str:
    return str(uuid.uuid5(ASSET_NAMESPACE, symbol))


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def order(trade: Trade) -> dict[str, Any]:
    filled = trade.status == Trade.Status.FILLED
    final = trade.finished_at
    return {
        "id": order_id(trade.id),
        # Alpaca always has one: an order placed without its own key shows its id.
        "client_order_id": trade.client_order_id or order_id(trade.id),
        "created_at": _time(trade.created_at),
        "updated_at": _time(trade.updated_at),
        "submitted_at": _time(trade.submitted_at or trade.created_at),
        "filled_at": _time(trade.executed_at) if filled else None,
        "expired_at": None,
        "expires_at": None,
        "canceled_at": _time(final) if trade.status == Trade.Status.CANCELLED else None,
        "failed_at": _time(final) if trade.status == Trade.Status.REJECTED else None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": asset_id(trade.ticker_id),
        "symbol": trade.ticker_id,
        "asset_class": "us_equity",
        "notional": None,
        "qty": str(trade.quantity),
        "filled_qty": str(trade.quantity if filled else 0),
        "filled_avg_price": str(trade.fill_price) if filled else None,
        "order_class": "simple",
        "order_type": "market",
        "type": "market",
        "side": trade.side,
        "time_in_force": "day",
        "limit_price": None,
        "stop_price": None,
        "status": ORDER_STATUS[Trade.Status(trade.status)],
        "extended_hours": False,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
        # Not Alpaca's: why a rejected or cancelled order ended.
        "reason": trade.reason,
    }


def position(held: Position) -> dict[str, Any]:
    return {
        "asset_id": asset_id(held.ticker),
        "symbol": held.ticker,
        "exchange": "",
        "asset_class": "us_equity",
        "asset_marginable": False,
        "avg_entry_price": str(held.avg_entry_price),
        "qty": str(held.quantity),
        "qty_available": str(held.quantity - held.held),
        "side": "long",
        "cost_basis": str(held.cost_basis),
        "market_value": None,
        "unrealized_pl": None,
        "unrealized_plpc": None,
        "unrealized_intraday_pl": None,
        "unrealized_intraday_plpc": None,
        "current_price": None,
        "lastday_price": None,
        "change_today": None,
    }


def asset(ticker: Ticker) -> dict[str, Any]:
    return {
        "id": asset_id(ticker.symbol),
        "class": "us_equity",
        "exchange": "",
        "symbol": ticker.symbol,
        "name": ticker.name,
        "status": "active" if ticker.active else "inactive",
        "tradable": ticker.active,
        "marginable": False,
        "shortable": False,
        "easy_to_borrow": False,
        "fractionable": False,
    }


ACCOUNT_STATUS = {
    "active": "ACTIVE",
    "trading_blocked": "ACTIVE",
    "closing_only": "ACTIVE",
    "closed": "ACCOUNT_CLOSED",
}


def account(
    *, customer_id: int, cash: Decimal, available: Decimal, status: str, created: datetime
) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=customer_id)),
        "account_number": str(customer_id),
        "status": ACCOUNT_STATUS[status],
        "currency": "USD",
        "cash": str(cash),
        "buying_power": str(available),
        "non_marginable_buying_power": str(available),
        "regt_buying_power": str(available),
        # Without quotes, positions are not valued: equity is the cash alone.
        "equity": str(cash),
        "portfolio_value": str(cash),
        "last_equity": None,
        "long_market_value": None,
        "short_market_value": "0",
        # A cash account: no margin, no day trading on margin, no options, no fees.
        "multiplier": "1",
        "daytrading_buying_power": "0",
        "initial_margin": "0",
        "maintenance_margin": "0",
        "last_maintenance_margin": "0",
        "sma": "0",
        "daytrade_count": 0,
        "accrued_fees": "0",
        "options_buying_power": "0",
        "options_approved_level": 0,
        "options_trading_level": 0,
        "shorting_enabled": False,
        "trading_blocked": status in ("trading_blocked", "closed"),
        "transfers_blocked": True,
        "account_blocked": status == "closed",
        "trade_suspended_by_user": False,
        "pattern_day_trader": False,
        "created_at": _time(created),
    }


# Our ledger's kinds as Alpaca's activity types (alpaca_compat.activities, the other
# way); a reversal is a journal entry of cash or of shares.
ACTIVITY_TYPE = {
    LedgerEntry.Kind.BUY_SHARES: "FILL",
    LedgerEntry.Kind.SELL_SHARES: "FILL",
    LedgerEntry.Kind.DEPOSIT: "CSD",
    LedgerEntry.Kind.WITHDRAWAL: "CSW",
    LedgerEntry.Kind.SHARES_IN: "ACATS",
    LedgerEntry.Kind.SHARES_OUT: "ACATS",
}


def activity_type(entry: LedgerEntry) -> str:
    if entry.kind == LedgerEntry.Kind.REVERSAL:
        return "JNLC" if entry.ticker is None else "JNLS"
    return ACTIVITY_TYPE[LedgerEntry.Kind(entry.kind)]


def activity_id(entry: LedgerEntry) -> str:
    """Alpaca's `<time to the millisecond>::<uuid>`; the uuid's number is the entry's id."""
    stamp = entry.created_at.astimezone(UTC).strftime("%Y%m%d%H%M%S%f")[:17]
    return f"{stamp}::{uuid.UUID(int=entry.id)}"


def entry_id_of(activity: str) -> int | None:
    """The ledger entry id of an activity id, or None if it is not one of ours."""
    _, sep, tail = activity.partition("::")
    return trade_id_of(tail) if sep else None


def activity(
    entry: LedgerEntry, trade: Trade | None = None, cash: Decimal | None = None
) -> dict[str, Any]:
    """A fill's share entry as a FILL, with `cash` (its cash entry's amount) as
    `net_amount`, not Alpaca's: price × qty rounded to the cent, in the broker's favour."""
    common = {
        "id": activity_id(entry),
        "account_id": str(uuid.UUID(int=entry.customer_id)),
        "activity_type": activity_type(entry),
    }
    if trade is not None:
        quantity = str(abs(entry.share_quantity or 0))
        return common | {
            "transaction_time": _time(entry.created_at),
            "type": "fill",
            "price": str(trade.fill_price),
            "qty": quantity,
            "side": trade.side,
            "symbol": trade.ticker_id,
            "leaves_qty": "0",
            "order_id": order_id(trade.id),
            "cum_qty": quantity,
            "order_status": "filled",
            "net_amount": str(cash),
        }
    return common | {
        "date": entry.created_at.astimezone(UTC).date().isoformat(),
        "net_amount": str(entry.cash_amount or 0),
        "description": entry.get_kind_display(),
        "status": "executed",
        "symbol": entry.ticker,
        "qty": None if entry.share_quantity is None else str(entry.share_quantity),
        "price": None,
        "per_share_amount": None,
    }
