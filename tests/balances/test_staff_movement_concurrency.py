"""Staff movements racing customers' trades and each other, on real connections: a third
session holds the account row until both contenders wait for it, then lets them go in
the order the test chose."""

from __future__ import annotations

import functools
import threading
from decimal import Decimal

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections

from balances.models import Account, LedgerEntry, StaffMovement
from balances.movements import MovementTerms, movement_approve, movement_propose
from brokerage.errors import BrokerageError
from devtools.stack import database_url, wait_for
from execution.audit import audit
from execution.in_flight import trade_put_in_flight
from execution.settlement import trade_settle
from tests.factories import create_customer, lead_shard_of, place_and_send, report_for
from trades.models import Trade
from trades.services import trade_place

pytestmark = pytest.mark.django_db(transaction=True)


def staff(name: str, *codenames: str):
    user = get_user_model().objects.create_user(username=name, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return get_user_model().objects.get(pk=user.pk)


def lock_waiters(observer) -> int:
    return observer.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()[0]


def waiters_are(observer, count: int) -> bool:
    return lock_waiters(observer) == count


def race(customer_id: int, *contenders) -> list[object]:
    """Run each contender in a thread of its own, queued on the customer's account lock in
    the order given; returns what each returned or raised."""
    results: list[object] = [None] * len(contenders)

    def run(i, work):
        try:
            results[i] = work()
        except BrokerageError as refused:
            results[i] = refused
        finally:
            connections.close_all()

    with (
        psycopg.connect(database_url(), autocommit=True) as observer,
        psycopg.connect(database_url()) as blocker,
    ):
        blocker.execute(
            "SELECT 1 FROM balances_account WHERE customer_id = %s FOR UPDATE", [customer_id]
        )
        threads = []
        for i, work in enumerate(contenders):
            thread = threading.Thread(target=run, args=(i, work))
            thread.start()
            threads.append(thread)
            wait_for(
                functools.partial(waiters_are, observer, i + 1),
                timeout=10,
                what=f"contender {i + 1} to wait for the account lock",
            )
        blocker.rollback()
    for thread in threads:
        thread.join(timeout=20)
        assert not thread.is_alive()
    return results


def assert_reconciles():
    broken = [check for check in audit() if not check.ok]
    assert broken == [], [(c.name, c.failures) for c in broken]


def account(customer_id: int) -> Account:
    return Account.objects.get(customer_id=customer_id)


@pytest.mark.parametrize("first", ["withdrawal", "hold"])
def test_a_withdrawal_racing_a_buys_hold_and_its_fill_never_takes_cash_below_zero(first):
    customer = create_customer(cash="1000.00")
    maker = staff("maker", "propose_movement")
    trade = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=6).trade
    shard, epoch = lead_shard_of(customer.id)

    def withdraw():
        return movement_propose(
            staff=maker,
            idempotency_key="w-1",
            terms=MovementTerms(
                customer_id=customer.id, kind="withdrawal", memo="to bank", amount=Decimal("500")
            ),
        )

    def hold():
        return trade_put_in_flight(
            shard=shard, epoch=epoch, customer_id=customer.id, quotes={"AAPL": Decimal("100")}
        )

    contenders = {"withdrawal": withdraw, "hold": hold}
    second = "hold" if first == "withdrawal" else "withdrawal"
    results = dict(
        zip((first, second), race(customer.id, contenders[first], contenders[second]), strict=True)
    )

    trade.refresh_from_db()
    if first == "withdrawal":
        assert isinstance(results["withdrawal"], StaffMovement)
        assert trade.status == "rejected" and trade.reason == "insufficient funds"
        assert account(customer.id).cash == Decimal("500.00")
    else:
        assert isinstance(results["withdrawal"], BrokerageError)
        assert results["withdrawal"].code == "insufficient_available"
        assert trade.status == "in_progress"
        assert not StaffMovement.objects.exists()
    assert account(customer.id).cash >= 0
    assert_reconciles()


def test_a_withdrawal_racing_a_fill_takes_only_what_is_available_either_way():
    customer = create_customer(cash="1000.00")
    maker = staff("maker", "propose_movement")
    trade, _ = place_and_send(customer.id, quantity=6, quote="100.00")
    available = account(customer.id).available_cash
    keys = iter(f"w-{i}" for i in range(10))

    def withdraw_available_now():
        return movement_propose(
            staff=maker,
            idempotency_key=next(keys),
            terms=MovementTerms(
                customer_id=customer.id, kind="withdrawal", memo="all of it", amount=available
            ),
        )

    def fill():
        return trade_settle(report=report_for(trade, price="100.00"))

    withdrawn, _ = race(customer.id, withdraw_available_now, fill)
    assert isinstance(withdrawn, StaffMovement)
    # After the fill the hold is released: 1,000 - 600 - what was withdrawn remains.
    assert account(customer.id).cash == Decimal("400.00") - available
    assert account(customer.id).cash_held == 0
    assert Trade.objects.get(id=trade.id).status == "filled"
    assert account(customer.id).cash >= 0
    assert_reconciles()


def test_two_approvals_of_the_same_request_move_the_money_once(settings):
    settings.STAFF_APPROVAL_CASH_ABOVE = Decimal("100.00")
    customer = create_customer(cash="0.00")
    maker = staff("maker", "propose_movement")
    checkers = [staff(f"checker-{i}", "approve_movement") for i in (1, 2)]
    pending = movement_propose(
        staff=maker,
        idempotency_key="wire-7",
        terms=MovementTerms(
            customer_id=customer.id, kind="deposit", memo="wire 7", amount=Decimal("2500.00")
        ),
    )

    results = race(
        customer.id,
        *(lambda c=c: movement_approve(staff=c, movement_id=pending.id) for c in checkers),
    )

    applied = [r for r in results if isinstance(r, StaffMovement)]
    refused = [r for r in results if isinstance(r, BrokerageError)]
    assert len(applied) == 1 and [r.code for r in refused] == ["movement_not_pending"]
    assert account(customer.id).cash == Decimal("2500.00")
    assert LedgerEntry.objects.filter(customer_id=customer.id, kind="deposit").count() == 1
    assert_reconciles()
