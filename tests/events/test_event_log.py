"""The customer event log: every change a customer can see, written by triggers in the
transaction of the change, numbered per customer with no gap, in the API's shapes."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import DatabaseError, connection, connections, transaction

from balances.apis import ActivitySerializer
from balances.models import Account, LedgerEntry, Position
from balances.movements import MovementTerms, movement_propose
from balances.selectors import ACTIVITY_TYPE_OF
from events.models import CustomerEvent
from events.sql import EVENT_LOG_BACKFILL_SQL
from execution.in_flight import trade_put_in_flight
from execution.settlement import trade_settle
from tests.factories import lead_shard_of, place_and_send, report_for
from trades.apis import TradeOutputSerializer
from trades.models import Trade
from trades.services import trade_cancel, trade_place

TIME_FIELDS = {"created_at", "submitted_at", "executed_at", "finished_at", "updated_at"}


def events_of(customer_id: int) -> list[CustomerEvent]:
    return list(CustomerEvent.objects.filter(customer_id=customer_id).order_by("seq"))


def comparable(data: dict) -> dict:
    """Times as instants: Postgres always writes the microseconds, Python not when zero."""
    return {
        key: datetime.fromisoformat(value) if key in TIME_FIELDS and value else value
        for key, value in data.items()
    }


def as_api_shows(trade_id: int) -> dict:
    return comparable(TradeOutputSerializer(Trade.objects.get(id=trade_id)).data)


def activity_as_api_shows(entry: LedgerEntry) -> dict:
    entry.type = ACTIVITY_TYPE_OF[entry.kind]  # type: ignore[attr-defined]
    return comparable(ActivitySerializer(entry).data)


def send(customer_id: int, quote: str = "100.00") -> None:
    shard, epoch = lead_shard_of(customer_id)
    trade_put_in_flight(
        shard=shard, epoch=epoch, customer_id=customer_id, quotes={"AAPL": Decimal(quote)}
    )


@pytest.mark.django_db
def test_a_new_account_starts_its_log_with_its_funding(make_customer):
    customer = make_customer(cash="500.00", positions={"AAPL": 4})

    events = events_of(customer.id)
    assert [(e.seq, e.type, e.data["kind"]) for e in events] == [
        (1, "activity", "deposit"),
        (2, "activity", "shares_in"),
    ]
    assert events[0].data["cash_after"] == "500.00"
    assert events[1].data["quantity_after"] == 4


@pytest.mark.django_db
def test_a_filled_buy_is_placed_sent_paid_delivered_and_filled_in_order(customer):
    start = len(events_of(customer.id))
    trade = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=3).trade
    placed = as_api_shows(trade.id)
    send(customer.id)
    sent = as_api_shows(trade.id)
    trade_settle(report=report_for(Trade.objects.get(id=trade.id), price="99.5000"))
    filled = as_api_shows(trade.id)

    new = events_of(customer.id)[start:]
    assert [e.seq for e in new] == list(range(start + 1, start + 6))
    assert [e.type for e in new] == [
        "trade_placed",
        "trade_sent",
        "activity",
        "activity",
        "trade_filled",
    ]
    assert [comparable(e.data) for e in (new[0], new[1], new[4])] == [placed, sent, filled]
    cash, shares = LedgerEntry.objects.filter(trade_id=trade.id).order_by("id")
    account = Account.objects.get(customer_id=customer.id)
    position = Position.objects.get(customer_id=customer.id, ticker="AAPL")
    assert comparable(new[2].data) == {
        **activity_as_api_shows(cash),
        "cash_after": str(account.cash),
        "quantity_after": None,
    }
    assert comparable(new[3].data) == {
        **activity_as_api_shows(shares),
        "cash_after": None,
        "quantity_after": position.quantity,
    }
    assert new[2].data["type"] == "fill" and new[3].data["share_quantity"] == 3


@pytest.mark.django_db
def test_a_sell_rejected_by_the_exchange_and_a_cancelled_trade_end_their_logs(customer):
    start = len(events_of(customer.id))
    sell, _ = place_and_send(customer.id, side="sell", quantity=2)
    trade_settle(report=report_for(sell, status="rejected"))
    rejected = as_api_shows(sell.id)
    later = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1).trade
    trade_cancel(customer_id=customer.id, trade_id=later.id)

    new = events_of(customer.id)[start:]
    assert [e.type for e in new] == [
        "trade_placed",
        "trade_sent",
        "trade_rejected",
        "trade_placed",
        "trade_cancelled",
    ]
    assert comparable(new[2].data) == rejected and rejected["reason"] == "rejected by exchange"
    assert comparable(new[4].data) == as_api_shows(later.id)


@pytest.mark.django_db
def test_a_trade_short_of_cash_is_rejected_before_it_is_sent(make_customer):
    customer = make_customer(cash="10.00")
    trade = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=5).trade
    send(customer.id)

    assert [e.type for e in events_of(customer.id)][-2:] == ["trade_placed", "trade_rejected"]
    assert comparable(events_of(customer.id)[-1].data) == as_api_shows(trade.id)


@pytest.mark.django_db
def test_a_staff_deposit_is_an_activity_with_the_balance_after_it(customer):
    staff = get_user_model().objects.create_user(username="sam", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="propose_movement"))
    staff = get_user_model().objects.get(pk=staff.pk)
    movement_propose(
        staff=staff,
        idempotency_key="dep-1",
        terms=MovementTerms(
            customer_id=customer.id, kind="deposit", memo="wire in", amount=Decimal("25.50")
        ),
    )

    last = events_of(customer.id)[-1]
    entry = LedgerEntry.objects.filter(customer_id=customer.id).latest("id")
    assert last.type == "activity" and last.data["kind"] == "deposit"
    assert comparable(last.data) == {
        **activity_as_api_shows(entry),
        "cash_after": "10025.50",
        "quantity_after": None,
    }


@pytest.mark.django_db
def test_what_rolls_back_leaves_no_event_and_no_gap(customer):
    start = len(events_of(customer.id))
    with pytest.raises(RuntimeError), transaction.atomic():
        trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1)
        raise RuntimeError("the caller gave up")
    trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1)

    assert [e.seq for e in events_of(customer.id)] == list(range(1, start + 2))


@pytest.mark.django_db
def test_the_event_log_is_append_only(customer):
    for statement in (
        "UPDATE events_customerevent SET type = 'activity'",
        "DELETE FROM events_customerevent",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement)
    assert len(events_of(customer.id)) == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_one_customer_number_events_without_gap_or_twin(make_customer):
    """Placements on 8 connections at once, while the customer's trades are put in flight,
    settled and cancelled on others: every event gets the next number, in commit order."""
    customer = make_customer(cash="1000000.00")
    barrier = threading.Barrier(10)

    def place(i):
        barrier.wait(timeout=10)
        for _ in range(6):
            trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1)

    def settle(i):
        barrier.wait(timeout=10)
        for _ in range(12):
            send(customer.id)
            open_trade = Trade.objects.filter(
                customer_id=customer.id, status=Trade.Status.IN_PROGRESS
            ).first()
            if open_trade is not None:
                trade_settle(report=report_for(open_trade))

    def cancel(i):
        barrier.wait(timeout=10)
        for _ in range(12):
            for trade in Trade.objects.filter(customer_id=customer.id, status="placed")[:1]:
                try:
                    trade_cancel(customer_id=customer.id, trade_id=trade.id)
                except Exception:  # noqa: BLE001 - sent or cancelled meanwhile
                    pass

    def task(i):
        try:
            (place if i < 8 else settle if i == 8 else cancel)(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(task, range(10)))

    events = events_of(customer.id)
    trades = Trade.objects.filter(customer_id=customer.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.type == "trade_placed" for e in events) == trades.count() == 48
    assert sum(e.type == "activity" for e in events) == (
        LedgerEntry.objects.filter(customer_id=customer.id).count()
    )
    final = {e.data["id"]: e.data["status"] for e in events if e.type != "activity"}
    assert final == {t.id: t.status for t in trades}
    statuses = {t.status for t in trades}
    assert {"filled", "cancelled"} <= statuses


@pytest.mark.django_db(transaction=True)
def test_the_backfill_tells_the_history_as_the_triggers_wrote_it(make_customer):
    """What migration 0001 writes for the trades and entries before the log existed is
    what the triggers write as they happen (each change its own transaction, as in life)."""
    customer = make_customer(cash="1000.00", positions={"AAPL": 5})
    filled, _ = place_and_send(customer.id, quantity=2)
    trade_settle(report=report_for(filled, price="99.0000"))
    rejected, _ = place_and_send(customer.id, side="sell", quantity=1)
    trade_settle(report=report_for(rejected, status="rejected"))
    short = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=500).trade
    send(customer.id)
    trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1)
    assert Trade.objects.get(id=short.id).status == "rejected"

    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE backfill (LIKE events_customerevent)")
        cursor.execute(
            EVENT_LOG_BACKFILL_SQL.replace(
                "INSERT INTO events_customerevent", "INSERT INTO pg_temp.backfill"
            )
        )
        cursor.execute(
            "SELECT seq, type, data FROM pg_temp.backfill WHERE customer_id = %s ORDER BY seq",
            [customer.id],
        )
        backfilled = [
            (seq, kind, data if isinstance(data, dict) else json.loads(data))
            for seq, kind, data in cursor.fetchall()
        ]

    live = [(e.seq, e.type, e.data) for e in events_of(customer.id)]
    assert len(live) == 13
    assert backfilled == live
