"""Settlement racing a placement of the same customer, on real connections."""

import threading

import psycopg
import pytest
from django.db import connections

from devtools.stack import database_url, wait_for
from execution.settlement import trade_settle
from outbox.models import OutboxMessage
from tests.factories import place_and_send, report_for
from trades.models import Trade
from trades.services import trade_place

pytestmark = pytest.mark.django_db(transaction=True)


def lock_waiters(observer) -> int:
    return observer.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()[0]


def in_a_thread(work) -> threading.Thread:
    def run():
        try:
            work()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("status", ["filled", "rejected"])
def test_a_trade_placed_while_the_one_before_it_settles_is_not_left_without_a_wake_up(
    customer, status
):
    """The placement waits for the account lock the settlement holds: it cannot see the
    settlement, nor the settlement it. Whichever way, the new trade must have an outbox row.
    The settlement is held up between its two locks (account, then trade) by a third
    session holding the trade row, until the placement is waiting too."""
    first, _ = place_and_send(customer.id, quantity=1)
    placed = {}
    with (
        psycopg.connect(database_url(), autocommit=True) as observer,
        psycopg.connect(database_url()) as blocker,
    ):
        blocker.execute("SELECT 1 FROM trades_trade WHERE id = %s FOR UPDATE", [first.id])
        settling = in_a_thread(lambda: trade_settle(report=report_for(first, status=status)))
        wait_for(lambda: lock_waiters(observer) == 1, timeout=10, what="the settlement to wait")

        def place_the_next_trade():
            placed["trade"] = trade_place(
                customer_id=customer.id, ticker="AAPL", side="buy", quantity=1
            ).trade

        placement = in_a_thread(place_the_next_trade)
        wait_for(
            lambda: lock_waiters(observer) == 2,
            timeout=10,
            what="the placement to wait for the account lock",
        )
        blocker.rollback()
    settling.join(timeout=10)
    placement.join(timeout=10)

    assert Trade.objects.get(id=first.id).status == status
    assert Trade.objects.get(id=placed["trade"].id).status == "placed"
    assert OutboxMessage.objects.filter(customer_id=customer.id).exists()
