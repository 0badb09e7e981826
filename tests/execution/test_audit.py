"""The audit finds what the services would never do: states forged here with plain SQL."""

from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from execution.audit import audit
from trades.models import Trade
from trades.services import trade_place

pytestmark = pytest.mark.django_db


def broken_checks() -> list[str]:
    return [check.name for check in audit() if not check.ok]


def filled_buy(
    customer_id: int,
    ticker: str = "AAPL",
    *,
    limit_price: str = "105",
    cash_held: str = "1050.00",
) -> Trade:
    """10 shares at 100.00 (protection `limit_price`, `cash_held` held), as if filled: its
    settlement is up to the test."""
    now = timezone.now()
    return Trade.objects.create(
        customer_id=customer_id,
        seq=1,
        ticker_id=ticker,
        side="buy",
        quantity=10,
        status="filled",
        submitted_at=now,
        executed_at=now,
        finished_at=now,
        fill_price=Decimal("100"),
        limit_price=Decimal(limit_price),
        cash_held=Decimal(cash_held),
    )


def settle(trade: Trade, *, payer: int, ticker: str, cash_kind: str = "buy_cash") -> None:
    """Book the buy's two ledger entries and balances for `payer`, in `ticker`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE balances_account SET cash = cash - 1000 WHERE customer_id = %s", [payer]
        )
        cursor.execute(
            "INSERT INTO balances_position (customer_id, ticker, quantity, held) "
            "VALUES (%s, %s, 10, 0) ON CONFLICT (customer_id, ticker) "
            "DO UPDATE SET quantity = balances_position.quantity + 10",
            [payer, ticker],
        )
        cursor.execute(
            "INSERT INTO balances_ledgerentry "
            "(customer_id, trade_id, kind, ticker, cash_amount, share_quantity, created_at) "
            "VALUES (%s, %s, %s, NULL, -1000, NULL, now()), "
            "(%s, %s, 'buy_shares', %s, NULL, 10, now())",
            [payer, trade.id, cash_kind, payer, trade.id, ticker],
        )


SETTLED_ONCE = (
    "each filled trade settled exactly once, for its value, to its customer and ticker; "
    "no other trade moved money"
)


def test_a_fill_settled_as_the_services_would_passes(make_customer):
    buyer = make_customer()
    settle(filled_buy(buyer.id), payer=buyer.id, ticker="AAPL")

    assert broken_checks() == []


def test_a_fill_settled_to_another_customer_is_found(make_customer):
    buyer, other = make_customer(), make_customer()
    settle(filled_buy(buyer.id), payer=other.id, ticker="AAPL")

    assert broken_checks() == [SETTLED_ONCE]


def test_a_fill_settled_in_another_ticker_is_found(make_customer):
    buyer = make_customer()
    settle(filled_buy(buyer.id, ticker="AAPL"), payer=buyer.id, ticker="MSFT")

    assert broken_checks() == [SETTLED_ONCE]


def test_a_fill_booked_under_the_other_sides_kinds_is_found(make_customer):
    buyer = make_customer()
    settle(filled_buy(buyer.id), payer=buyer.id, ticker="AAPL", cash_kind="sell_cash")

    assert broken_checks() == [SETTLED_ONCE]


PROTECTED = "each fill within its price protection, and a buy's cost within its hold"


@pytest.mark.parametrize(
    "terms",
    [{"limit_price": "99.9999"}, {"cash_held": "999.99"}],
    ids=["above_limit", "beyond_hold"],
)
def test_a_buy_filled_beyond_its_protection_or_its_hold_is_found(make_customer, terms):
    buyer = make_customer()
    settle(filled_buy(buyer.id, **terms), payer=buyer.id, ticker="AAPL")

    assert broken_checks() == [PROTECTED]


def test_an_event_log_with_a_gap_is_found(customer):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO events_customerevent (customer_id, seq, type, data, created_at) "
            "VALUES (%s, 9, 'activity', '{}', now())",
            [customer.id],
        )

    assert "each customer's event log numbered 1, 2, 3, ... with no gap" in broken_checks()


def test_a_trade_whose_events_miss_its_end_is_found(customer):
    trade = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1).trade
    assert broken_checks() == []
    with connection.cursor() as cursor:
        # As if a status change had escaped the trigger (replica mode fires none).
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "UPDATE trades_trade SET status = 'cancelled', finished_at = now(), "
            "reason = 'x' WHERE id = %s",
            [trade.id],
        )
        cursor.execute("SET session_replication_role = origin")

    assert broken_checks() == [
        "each trade's events in the event log: placed, each status it took, its final state"
    ]


def test_a_ledger_entry_missing_from_the_event_log_is_found(customer):
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "UPDATE balances_account SET cash = cash + 5 WHERE customer_id = %s", [customer.id]
        )
        cursor.execute(
            "INSERT INTO balances_ledgerentry (customer_id, kind, cash_amount, created_at) "
            "VALUES (%s, 'deposit', 5, now())",
            [customer.id],
        )
        cursor.execute("SET session_replication_role = origin")

    assert broken_checks() == ["each ledger entry once in its customer's event log"]
