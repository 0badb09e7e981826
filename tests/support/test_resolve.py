"""Resolving a trade stuck in flight: only a supervisor, only after asking the exchange,
and only through trade_settle, so a record that disagrees is refused as any report is."""

from __future__ import annotations

from decimal import Decimal

import pytest
import responses
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from balances.models import Account, LedgerEntry
from brokerage.errors import BrokerageError
from execution.audit import audit
from execution.in_flight import trade_put_in_flight
from staff_actions.models import StaffAction
from support.roles import SUPERVISOR, SUPPORT
from support.trades import NO_RECORD, trade_resolve
from tests.factories import lead_shard_of, place_and_send
from trades.models import TradeEvent
from trades.services import trade_place

pytestmark = pytest.mark.django_db

EXCHANGE = "http://exchange.test"


def staff_in(role: str):
    user = get_user_model().objects.create_user(username=role, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return get_user_model().objects.get(pk=user.pk)


def order(trade, **overrides):
    body = {
        "client_order_id": str(trade.id),
        "exchange_order_id": "X-9",
        "status": "filled",
        "ticker": trade.ticker_id,
        "side": trade.side,
        "quantity": trade.quantity,
        "fill_price": "100.0000",
        "executed_at": "2026-12-03T09:30:00+00:00",
        "reason": None,
    }
    body.update(overrides)
    return body


def exchange_says(mocked, trade, http_status=200, **overrides):
    body = {"status": "unknown"} if http_status == 404 else order(trade, **overrides)
    mocked.get(f"{EXCHANGE}/orders/{trade.id}", status=http_status, json=body)


def refused(code: str, action) -> BrokerageError:
    with pytest.raises(BrokerageError) as raised:
        action()
    assert raised.value.code == code, raised.value.detail
    return raised.value


def assert_reconciles():
    assert [c.name for c in audit() if not c.ok] == []


@pytest.fixture
def mocked():
    with responses.RequestsMock() as rsps:
        yield rsps


def test_a_trade_the_exchange_filled_is_settled_from_its_record(customer, mocked):
    trade, _ = place_and_send(customer.id, quantity=2)
    exchange_says(mocked, trade)

    resolved = trade_resolve(staff=staff_in(SUPERVISOR), trade_id=trade.id, reason="stuck")

    assert resolved.status == "filled" and resolved.fill_price == Decimal("100.0000")
    assert LedgerEntry.objects.filter(trade=trade).count() == 2
    assert TradeEvent.objects.filter(trade=trade).last().actor == f"staff {SUPERVISOR}"
    action = StaffAction.objects.get(kind="trade_resolved")
    assert action.details["exchange_status"] == "filled" and action.reason == "stuck"
    assert_reconciles()


def test_an_order_the_exchange_lost_is_rejected_and_its_hold_released(customer, mocked):
    trade, _ = place_and_send(customer.id, quantity=2)
    later = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1).trade
    assert Account.objects.get(customer_id=customer.id).cash_held > 0
    exchange_says(mocked, trade, http_status=404)

    resolved = trade_resolve(staff=staff_in(SUPERVISOR), trade_id=trade.id, reason="lost")

    assert (resolved.status, resolved.reason) == ("rejected", NO_RECORD)
    assert Account.objects.get(customer_id=customer.id).cash_held == 0
    # The customer's next trade is no longer blocked behind it: it goes out next.
    shard, epoch = lead_shard_of(customer.id)
    sent = trade_put_in_flight(
        shard=shard, epoch=epoch, customer_id=customer.id, quotes={"AAPL": Decimal("100")}
    )
    assert sent is not None and sent.client_order_id == str(later.id)
    assert_reconciles()


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"status": "open", "fill_price": None, "executed_at": None}, "still_open_at_exchange"),
        ({"quantity": 3}, "report_mismatch"),
        ({"fill_price": "999.0000"}, "report_mismatch"),
    ],
)
def test_an_open_or_disagreeing_record_is_refused_and_changes_nothing(
    customer, mocked, answer, code
):
    trade, _ = place_and_send(customer.id, quantity=2)
    exchange_says(mocked, trade, **answer)
    held = Account.objects.get(customer_id=customer.id).cash_held

    refused(code, lambda: trade_resolve(staff=staff_in(SUPERVISOR), trade_id=trade.id, reason="x"))

    trade.refresh_from_db()
    assert trade.status == "in_progress"
    assert Account.objects.get(customer_id=customer.id).cash_held == held
    assert not StaffAction.objects.exists()


def test_the_exchange_not_answering_is_refused(customer, mocked):
    trade, _ = place_and_send(customer.id)
    for _ in range(3):  # the first try and its two retries
        mocked.get(f"{EXCHANGE}/orders/{trade.id}", status=503, json={"error": "unavailable"})
    refused(
        "exchange_unavailable",
        lambda: trade_resolve(staff=staff_in(SUPERVISOR), trade_id=trade.id, reason="x"),
    )


def test_only_a_supervisor_resolves_and_only_a_trade_in_flight(customer):
    trade, _ = place_and_send(customer.id)
    placed = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1).trade
    refused(
        "permission_denied",
        lambda: trade_resolve(staff=staff_in(SUPPORT), trade_id=trade.id, reason="x"),
    )
    supervisor = staff_in(SUPERVISOR)
    error = refused(
        "trade_not_stuck", lambda: trade_resolve(staff=supervisor, trade_id=placed.id, reason="x")
    )
    assert "cancel" in error.detail
    refused("unknown_trade", lambda: trade_resolve(staff=supervisor, trade_id=10**9, reason="x"))
