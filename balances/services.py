"""Every movement of cash or shares, each with its ledger entry, in the caller's transaction.

Functions that take or release holds change no balance and write no ledger entry; the
functions that move a balance write exactly one ledger entry per movement. Callers
hold the customer's account lock (`account_lock`) before calling the movers.

Lock order, everywhere: the customer's account row, then the trade row, then their
position row."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection, transaction

from balances.models import Account, LedgerEntry
from brokerage.errors import BrokerageError
from outbox.notify import customer_wake_on_commit
from outbox.sharding import shard_for_customer

NO_ACCOUNT = "This user has no brokerage account."


class NoAccount(BrokerageError):
    """The customer has no brokerage account (a staff user, say): nothing can be traded."""

    def __init__(self) -> None:
        super().__init__("no_account", NO_ACCOUNT, status_code=403)


RESTRICTED = {
    "trading_blocked": "Trading on this account is blocked: {reason}",
    "closing_only": "This account may only sell (closing only): {reason}",
    "closed": "This account is closed.",
}


class AccountRestricted(BrokerageError):
    """Staff restricted the account (Account.status): this order is not allowed."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(
            "account_restricted",
            RESTRICTED[status].format(reason=reason or "ask support."),
            status_code=403,
            extra={"account_status": status},
        )


def order_allowed(status: str, side: str) -> bool:
    """Whether an account of `status` may place an order of `side` (as PLACE_TRADE_SQL)."""
    return status == "active" or (status == "closing_only" and side == "sell")


_LEDGER_SQL = """
INSERT INTO balances_ledgerentry
    (customer_id, trade_id, kind, ticker, cash_amount, share_quantity, created_at)
VALUES (%s, %s, %s, %s, %s, %s, now())
"""
# A settled trade's two entries, the last part of each settlement statement below.
_LEDGER_PAIR_SQL = """
INSERT INTO balances_ledgerentry
    (customer_id, trade_id, kind, ticker, cash_amount, share_quantity, created_at)
VALUES (%(customer_id)s, %(trade_id)s, %(cash_kind)s, NULL, %(cash)s, NULL, now()),
       (%(customer_id)s, %(trade_id)s, %(shares_kind)s, %(ticker)s, NULL, %(shares)s, now())
"""
# Each settlement is one statement (one round trip): every part runs, or none does.
# What `quantity` shares taken out of a position take of its cost basis (see below).
COST_BASIS_OUT_SQL = "round(cost_basis * {quantity} / quantity, 2)"
_ADD_SHARES_SQL = """
INSERT INTO balances_position (customer_id, ticker, quantity, held)
VALUES (%(customer_id)s, %(ticker)s, %(quantity)s, 0)
ON CONFLICT (customer_id, ticker)
DO UPDATE SET quantity = balances_position.quantity + EXCLUDED.quantity
"""
# A position's cost basis (balances.models.Position): a buy adds the cash it paid; selling
# or transferring out q of Q shares takes q/Q of it, rounded to the cent (all of it for
# the last share); shares transferred in add none.
_BUY_SETTLE_SQL = f"""
WITH paid AS (
    UPDATE balances_account SET cash = cash - %(cost)s, cash_held = cash_held - %(hold)s
    WHERE customer_id = %(customer_id)s
), delivered AS (
    INSERT INTO balances_position (customer_id, ticker, quantity, held, cost_basis)
    VALUES (%(customer_id)s, %(ticker)s, %(quantity)s, 0, %(cost)s)
    ON CONFLICT (customer_id, ticker)
    DO UPDATE SET quantity = balances_position.quantity + EXCLUDED.quantity,
                  cost_basis = balances_position.cost_basis + EXCLUDED.cost_basis
)
{_LEDGER_PAIR_SQL}
"""
_SELL_SETTLE_SQL = f"""
WITH delivered AS (
    UPDATE balances_position SET quantity = quantity - %(quantity)s, held = held - %(quantity)s,
        cost_basis = cost_basis - {COST_BASIS_OUT_SQL.format(quantity="%(quantity)s")}
    WHERE customer_id = %(customer_id)s AND ticker = %(ticker)s
), paid AS (
    UPDATE balances_account SET cash = cash + %(proceeds)s WHERE customer_id = %(customer_id)s
)
{_LEDGER_PAIR_SQL}
"""


def account_lock(*, customer_id: int) -> datetime:
    """Take the customer lock (the account row, FOR UPDATE); returns the database's time
    once it is held (trades are stamped with the database's clock). Raises NoAccount."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT clock_timestamp() FROM balances_account WHERE customer_id = %s FOR UPDATE",
            [customer_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise NoAccount()
    return row[0]


def _execute(sql: str, params: list | dict) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _ledger_cash(*, customer_id: int, trade_id: int | None, kind: str, amount: Decimal) -> None:
    customer_wake_on_commit(customer_id)
    _execute(_LEDGER_SQL, [customer_id, trade_id, kind, None, amount, None])


def _ledger_shares(
    *, customer_id: int, trade_id: int | None, kind: str, ticker: str, quantity: int
) -> None:
    customer_wake_on_commit(customer_id)
    _execute(_LEDGER_SQL, [customer_id, trade_id, kind, ticker, None, quantity])


def account_open(
    *,
    username: str,
    cash: Decimal = Decimal("0"),
    positions: Mapping[str, int] | None = None,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
) -> Account:
    """Create a customer with an account, funded through the ledger. One transaction."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(
            username=username, email=email, first_name=first_name, last_name=last_name
        )
        account = Account.objects.create(customer=user, shard=shard_for_customer(user.id))
        if cash:
            cash_deposit(customer_id=user.id, amount=cash)
        for ticker, quantity in (positions or {}).items():
            shares_transfer_in(customer_id=user.id, ticker=ticker, quantity=quantity)
    account.refresh_from_db()
    return account


def cash_deposit(*, customer_id: int, amount: Decimal) -> None:
    if amount <= 0:
        raise ValueError("a deposit must be positive")
    with transaction.atomic():
        _execute(
            "UPDATE balances_account SET cash = cash + %s WHERE customer_id = %s",
            [amount, customer_id],
        )
        _ledger_cash(
            customer_id=customer_id, trade_id=None, kind=LedgerEntry.Kind.DEPOSIT, amount=amount
        )


def shares_transfer_in(*, customer_id: int, ticker: str, quantity: int) -> None:
    if quantity <= 0:
        raise ValueError("a transfer must be positive")
    with transaction.atomic():
        _execute(
            _ADD_SHARES_SQL, {"customer_id": customer_id, "ticker": ticker, "quantity": quantity}
        )
        _ledger_shares(
            customer_id=customer_id,
            trade_id=None,
            kind=LedgerEntry.Kind.SHARES_IN,
            ticker=ticker,
            quantity=quantity,
        )


def cash_hold(*, customer_id: int, amount: Decimal) -> bool:
    """Reserve `amount` of available cash; False (and nothing held) if there is not enough."""
    return bool(
        _execute(
            "UPDATE balances_account SET cash_held = cash_held + %s "
            "WHERE customer_id = %s AND cash - cash_held >= %s",
            [amount, customer_id, amount],
        )
    )


def cash_release(*, customer_id: int, amount: Decimal) -> None:
    _execute(
        "UPDATE balances_account SET cash_held = cash_held - %s WHERE customer_id = %s",
        [amount, customer_id],
    )


def shares_hold(*, customer_id: int, ticker: str, quantity: int) -> bool:
    """Reserve `quantity` available shares; False (and nothing held) if there are not enough."""
    return bool(
        _execute(
            "UPDATE balances_position SET held = held + %s "
            "WHERE customer_id = %s AND ticker = %s AND quantity - held >= %s",
            [quantity, customer_id, ticker, quantity],
        )
    )


def shares_release(*, customer_id: int, ticker: str, quantity: int) -> None:
    _execute(
        "UPDATE balances_position SET held = held - %s WHERE customer_id = %s AND ticker = %s",
        [quantity, customer_id, ticker],
    )


def buy_settle(
    *,
    customer_id: int,
    trade_id: int,
    ticker: str,
    quantity: int,
    cost: Decimal,
    hold: Decimal,
) -> None:
    """Pay `cost` from cash, release the buy's `hold`, deliver the shares; two ledger entries.

    The ledger's (trade, kind) uniqueness makes a second settlement of the same trade fail."""
    _execute(
        _BUY_SETTLE_SQL,
        {
            "customer_id": customer_id,
            "trade_id": trade_id,
            "ticker": ticker,
            "quantity": quantity,
            "cost": cost,
            "hold": hold,
            "cash_kind": LedgerEntry.Kind.BUY_CASH,
            "cash": -cost,
            "shares_kind": LedgerEntry.Kind.BUY_SHARES,
            "shares": quantity,
        },
    )


def sell_settle(
    *, customer_id: int, trade_id: int, ticker: str, quantity: int, proceeds: Decimal
) -> None:
    """Deliver the held shares, receive `proceeds` in cash; two ledger entries."""
    _execute(
        _SELL_SETTLE_SQL,
        {
            "customer_id": customer_id,
            "trade_id": trade_id,
            "ticker": ticker,
            "quantity": quantity,
            "proceeds": proceeds,
            "cash_kind": LedgerEntry.Kind.SELL_CASH,
            "cash": proceeds,
            "shares_kind": LedgerEntry.Kind.SELL_SHARES,
            "shares": -quantity,
        },
    )
