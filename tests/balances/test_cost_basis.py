"""A position's cost basis: each buy adds the cash it paid, selling or transferring out q of
Q shares takes q/Q of it to the cent, the last share takes the rest; what the migration
computes from the ledger is what settlement keeps."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection

from balances.models import Position
from balances.movements import MovementTerms, movement_propose
from execution.settlement import trade_settle
from tests.factories import place_and_send, report_for

pytestmark = pytest.mark.django_db

BACKFILL = importlib.import_module("balances.migrations.0009_position_cost_basis")


def fill(customer_id: int, side: str, quantity: int, price: str) -> None:
    trade, _ = place_and_send(customer_id, side=side, quantity=quantity, quote=price)
    assert trade_settle(report=report_for(trade, price=price)).value == "settled"


def position(customer_id: int) -> Position:
    return Position.objects.get(customer_id=customer_id, ticker="AAPL")


def staff_moves(customer_id: int, kind: str, quantity: int, key: str) -> None:
    staff, _ = get_user_model().objects.get_or_create(username="ops", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="propose_movement"))
    staff = get_user_model().objects.get(pk=staff.pk)
    terms = MovementTerms(
        customer_id=customer_id, kind=kind, memo="transfer", ticker="AAPL", quantity=quantity
    )
    movement_propose(staff=staff, idempotency_key=key, terms=terms)


def test_buys_add_what_they_paid_and_sells_take_their_share(make_customer):
    customer = make_customer(cash="100000.00")
    fill(customer.id, "buy", 3, "10.0001")  # pays 30.01 (a buy's cost rounds up)
    assert (position(customer.id).cost_basis, position(customer.id).avg_entry_price) == (
        Decimal("30.01"),
        Decimal("10.0033"),
    )
    fill(customer.id, "buy", 1, "20.0000")
    assert position(customer.id).cost_basis == Decimal("50.01")

    fill(customer.id, "sell", 1, "30.0000")  # takes 50.01 / 4 = 12.5025 -> 12.50
    assert position(customer.id).cost_basis == Decimal("37.51")
    fill(customer.id, "sell", 3, "30.0000")  # the last shares take what is left
    assert (position(customer.id).quantity, position(customer.id).cost_basis) == (0, 0)
    assert position(customer.id).avg_entry_price is None


def test_transfers_in_come_at_no_cost_and_transfers_out_take_their_share(make_customer):
    customer = make_customer(cash="100000.00")
    fill(customer.id, "buy", 2, "100.0000")
    staff_moves(customer.id, "shares_in", 2, "in-1")
    assert position(customer.id).cost_basis == Decimal("200.00")
    assert position(customer.id).avg_entry_price == Decimal("50.0000")

    staff_moves(customer.id, "shares_out", 1, "out-1")
    assert position(customer.id).cost_basis == Decimal("150.00")


def test_the_account_shows_each_positions_cost(make_customer):
    customer = make_customer(cash="100000.00")
    fill(customer.id, "buy", 4, "12.3456")  # 49.3824 -> 49.39

    positions = customer.client().get("/api/v1/account/").json()["positions"]

    assert positions == [
        {
            "ticker": "AAPL",
            "quantity": 4,
            "held": 0,
            "cost_basis": "49.39",
            "avg_entry_price": "12.3475",
        }
    ]


def test_the_migration_computes_from_the_ledger_what_settlement_kept(make_customer):
    customer = make_customer(cash="100000.00", positions={"AAPL": 5})
    for side, quantity, price in [
        ("buy", 3, "10.0001"),
        ("sell", 4, "11.0000"),
        ("buy", 7, "9.3333"),
        ("sell", 2, "12.0000"),
    ]:
        fill(customer.id, side, quantity, price)
    staff_moves(customer.id, "shares_out", 3, "out-2")
    kept = {p.ticker: p.cost_basis for p in Position.objects.filter(customer_id=customer.id)}

    with connection.cursor() as cursor:
        cursor.execute("UPDATE balances_position SET cost_basis = 0")
        cursor.execute(BACKFILL.BACKFILL_COST_BASIS_SQL)

    again = {p.ticker: p.cost_basis for p in Position.objects.filter(customer_id=customer.id)}
    assert again == kept and kept["AAPL"] > 0
