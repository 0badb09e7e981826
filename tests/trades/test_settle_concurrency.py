"""Settlement racing a placement of the same customer, on real connections."""

import threading

import psycopg
import pytest
from django.db import connections

from devtools.stack import database_url, wait_for
from outbox.models import OutboxMessage
from tests.trades.factories import place_and_send, report_for
from trades import execution
from trades.execution import trade_settle
from trades.models import Trade
from trades.services import trade_place

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("status", ["filled", "rejected"])
def test_a_trade_placed_while_the_one_before_it_settles_is_not_left_without_a_wake_up(
    customer, monkeypatch, status
):
    """The placement waits for the account lock the settlement holds: it cannot see the
    settlement, nor the settlement it. Whichever way, the new trade must have an outbox row."""
    first, _ = place_and_send(customer.id, quantity=1)
    placed = {}

    def place_the_next_trade():
        try:
            placed["trade"] = trade_place(
                customer_id=customer.id, ticker="AAPL", side="buy", quantity=1
            ).trade
        finally:
            connections.close_all()

    placement = threading.Thread(target=place_the_next_trade)
    save_fields = execution._save_fields

    def save_while_the_placement_waits(trade, fields):
        placement.start()
        with psycopg.connect(database_url(), autocommit=True) as observer:
            wait_for(
                lambda: observer.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).fetchone()[0],
                timeout=10,
                what="the placement to wait for the account lock",
            )
        save_fields(trade, fields)

    monkeypatch.setattr(execution, "_save_fields", save_while_the_placement_waits)
    trade_settle(report=report_for(first, status=status))
    placement.join(timeout=10)

    assert Trade.objects.get(id=placed["trade"].id).status == "placed"
    assert OutboxMessage.objects.filter(customer_id=customer.id).exists()
