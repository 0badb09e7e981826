"""Account statuses set by staff: placement refuses what the status forbids (403
account_restricted, nothing written), the account shows it, closing needs an empty
account and revokes the key, and each change is on the record."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from balances.models import Account
from balances.movements import MovementTerms, movement_propose
from brokerage.errors import BrokerageError
from outbox.models import OutboxMessage
from staff_actions.models import StaffAction
from support.accounts import account_status_set, note_write
from support.roles import SUPERVISOR, SUPPORT
from tests.factories import place_and_send
from trades.models import Trade

pytestmark = pytest.mark.django_db


def staff_in(role: str, name: str | None = None):
    user = get_user_model().objects.create_user(username=name or role, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def supervisor():
    return staff_in(SUPERVISOR)


def refused(code: str, action) -> BrokerageError:
    with pytest.raises(BrokerageError) as raised:
        action()
    assert raised.value.code == code, raised.value.detail
    return raised.value


def place(api, side="buy"):
    return api.post(
        "/api/v1/trades/", {"ticker": "AAPL", "side": side, "quantity": 1}, format="json"
    )


@pytest.mark.parametrize(
    ("status", "buy", "sell"),
    [("trading_blocked", 403, 403), ("closing_only", 403, 201), ("active", 201, 201)],
)
def test_placement_honours_the_status(api, customer, supervisor, status, buy, sell):
    if status != "active":
        account_status_set(staff=supervisor, customer_id=customer.id, status=status, reason="kyc")
    trades = Trade.objects.count()

    bought, sold = place(api, "buy"), place(api, "sell")

    assert (bought.status_code, sold.status_code) == (buy, sell)
    for response in (bought, sold):
        if response.status_code == 403:
            assert response.json()["error"] == "account_restricted"
            assert response.json()["account_status"] == status
            assert "kyc" in response.json()["detail"]
    assert Trade.objects.count() == trades + [buy, sell].count(201)
    assert OutboxMessage.objects.count() == [buy, sell].count(201)
    account = api.get("/api/v1/account/").json()
    assert account["status"] == status
    assert account["status_reason"] == ("" if status == "active" else "kyc")


def test_unblocking_lets_the_customer_trade_again_and_both_changes_are_recorded(
    api, customer, supervisor
):
    account_status_set(
        staff=supervisor, customer_id=customer.id, status="trading_blocked", reason="fraud check"
    )
    assert place(api).status_code == 403
    account_status_set(staff=supervisor, customer_id=customer.id, status="active", reason="ok")
    assert place(api).status_code == 201

    record = StaffAction.objects.filter(customer_id=customer.id, kind="account_status")
    assert [(a.details["from"], a.details["to"], a.reason) for a in record.order_by("id")] == [
        ("active", "trading_blocked", "fraud check"),
        ("trading_blocked", "active", "ok"),
    ]
    account = Account.objects.get(customer_id=customer.id)
    assert account.status_changed_by == supervisor and account.status_changed_at is not None


def test_closing_needs_an_empty_account_then_revokes_the_key(api, customer, supervisor):
    error = refused(
        "account_not_empty",
        lambda: account_status_set(
            staff=supervisor, customer_id=customer.id, status="closed", reason="asked"
        ),
    )
    assert error.status_code == 409 and len(error.extra["blockers"]) == 2
    place_and_send(customer.id, side="sell", quantity=10)
    with pytest.raises(BrokerageError, match="open trade"):
        account_status_set(staff=supervisor, customer_id=customer.id, status="closed", reason="x")
    assert Account.objects.get(customer_id=customer.id).status == "active"

    empty = empty_customer(supervisor)
    account_status_set(staff=supervisor, customer_id=empty.id, status="closed", reason="asked")
    assert empty.client().get("/api/v1/account/").status_code == 401
    refused(
        "account_closed",
        lambda: account_status_set(
            staff=supervisor, customer_id=empty.id, status="active", reason="oops"
        ),
    )


def empty_customer(supervisor):
    from tests.factories import create_customer

    customer = create_customer(cash="5.00")
    movement_propose(
        staff=supervisor,
        idempotency_key=f"empty-{customer.id}",
        terms=MovementTerms(
            customer_id=customer.id, kind="withdrawal", memo="closing", amount=Decimal("5.00")
        ),
    )
    return customer


def test_only_a_supervisor_restricts_and_every_refusal_changes_nothing(customer, supervisor):
    support = staff_in(SUPPORT)
    refused(
        "permission_denied",
        lambda: account_status_set(
            staff=support, customer_id=customer.id, status="trading_blocked", reason="x"
        ),
    )
    for status, reason, code in [
        ("frozen", "x", "invalid_status"),
        ("trading_blocked", " ", "reason_required"),
        ("active", "x", "status_unchanged"),
    ]:
        refused(
            code,
            lambda s=status, r=reason: account_status_set(
                staff=supervisor, customer_id=customer.id, status=s, reason=r
            ),
        )
    refused(
        "unknown_customer",
        lambda: account_status_set(
            staff=supervisor, customer_id=10**9, status="trading_blocked", reason="x"
        ),
    )
    assert Account.objects.get(customer_id=customer.id).status == "active"
    assert not StaffAction.objects.exists()


def test_support_writes_notes_on_customers_and_their_trades(customer):
    support = staff_in(SUPPORT)
    trade, _ = place_and_send(customer.id)
    note = note_write(staff=support, customer_id=customer.id, text="called about AAPL")
    on_trade = note_write(
        staff=support, customer_id=customer.id, trade_id=trade.id, text="stuck at exchange"
    )
    assert (note.kind, note.reason, note.staff) == ("note", "called about AAPL", support)
    assert on_trade.trade_id == trade.id
    refused(
        "unknown_trade",
        lambda: note_write(staff=support, customer_id=customer.id, trade_id=10**9, text="x"),
    )
    refused("note_required", lambda: note_write(staff=support, customer_id=customer.id, text=""))
    viewer = get_user_model().objects.create_user(username="viewer", is_staff=True)
    refused(
        "permission_denied", lambda: note_write(staff=viewer, customer_id=customer.id, text="x")
    )
