"""The support desk through the admin's real views: each role sees and can do exactly
what it allows (and is refused 403 otherwise), and every action lands through the
services."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from balances.models import Account, StaffMovement
from staff_actions.models import StaffAction
from support.roles import SUPERVISOR, SUPPORT
from tests.factories import place_and_send
from trades.models import Trade
from trades.services import trade_place

pytestmark = [pytest.mark.django_db, pytest.mark.urls("brokerage.admin_urls")]


def logged_in(role: str | None, name: str) -> Client:
    user = get_user_model().objects.create_user(username=name, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def support() -> Client:
    return logged_in(SUPPORT, "sam")


@pytest.fixture
def supervisor() -> Client:
    return logged_in(SUPERVISOR, "sue")


def page(customer_id: int) -> str:
    return f"/admin/balances/account/{customer_id}/change/"


def messages_of(client: Client, customer_id: int) -> str:
    return client.get(page(customer_id)).content.decode()


def move(client: Client, customer_id: int, key: str = "admin-k1", **fields):
    data = {"kind": "deposit", "memo": "goodwill", "idempotency_key": key, **fields}
    return client.post(f"/admin/balances/account/{customer_id}/move/", data)


def test_support_sees_the_customer_and_only_its_own_actions(support, customer):
    response = support.get(page(customer.id))
    html = response.content.decode()

    assert response.status_code == 200
    assert "Move cash or shares" in html and "Add a note" in html
    assert "Set status" not in html and 'value="Approve"' not in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", html)  # to the second, in UTC
    assert "10000.00" in html  # cash and available


def test_a_staff_member_without_a_role_cannot_open_the_desk(customer):
    assert logged_in(None, "nobody").get(page(customer.id)).status_code == 403


def test_support_cannot_restrict_or_approve(support, supervisor, customer, settings):
    settings.STAFF_APPROVAL_CASH_ABOVE = Decimal("100.00")
    status = support.post(
        f"/admin/balances/account/{customer.id}/status/",
        {"status": "trading_blocked", "reason": "x"},
    )
    assert status.status_code == 403
    assert Account.objects.get(customer_id=customer.id).status == "active"

    assert move(supervisor, customer.id, amount="500.00").status_code == 302
    pending = StaffMovement.objects.get()
    assert pending.status == "pending"
    assert (
        support.post(f"/admin/balances/account/movement/{pending.id}/approve/").status_code == 403
    )
    assert StaffMovement.objects.get().status == "pending"


def test_support_proposes_and_a_supervisor_approves(support, supervisor, customer, settings):
    settings.STAFF_APPROVAL_CASH_ABOVE = Decimal("100.00")
    small = move(support, customer.id, key="admin-small", amount="25.00")
    assert small.status_code == 302
    assert "is applied" in messages_of(support, customer.id)
    move(support, customer.id, key="admin-big", amount="2500.00")
    move(support, customer.id, key="admin-big", amount="2500.00")  # the form sent twice
    pending = StaffMovement.objects.get(status="pending")

    html = supervisor.get(page(customer.id)).content.decode()
    assert 'value="Approve"' in html and "Set status" in html
    approved = supervisor.post(f"/admin/balances/account/movement/{pending.id}/approve/")

    assert approved.status_code == 302
    assert Account.objects.get(customer_id=customer.id).cash == Decimal("12525.00")
    assert StaffMovement.objects.count() == 2
    kinds = StaffAction.objects.order_by("id").values_list("kind", flat=True)
    assert list(kinds) == ["movement_applied", "movement_proposed", "movement_approved"]


def test_refusals_are_messages_and_write_nothing(support, customer):
    for fields in ({"amount": "abc"}, {"amount": "1.001"}, {"kind": "withdrawal", "amount": "1e6"}):
        assert move(support, customer.id, **fields).status_code == 302
        assert "Refused (" in messages_of(support, customer.id)
    assert not StaffMovement.objects.exists() and not StaffAction.objects.exists()
    assert Account.objects.get(customer_id=customer.id).cash == Decimal("10000.00")


def test_a_supervisor_blocks_and_unblocks_trading(supervisor, customer):
    url = f"/admin/balances/account/{customer.id}/status/"
    supervisor.post(url, {"status": "trading_blocked", "reason": "fraud check"})
    assert Account.objects.get(customer_id=customer.id).status == "trading_blocked"
    assert "fraud check" in supervisor.get(page(customer.id)).content.decode()
    supervisor.post(url, {"status": "active", "reason": "cleared"})
    assert Account.objects.get(customer_id=customer.id).status == "active"


def test_notes_are_written_and_shown(support, customer):
    support.post(f"/admin/balances/account/{customer.id}/note/", {"text": "called at 9:14"})
    assert "called at 9:14" in support.get(page(customer.id)).content.decode()
    assert StaffAction.objects.get().kind == "note"


def test_customers_are_found_by_email_name_or_id(support, customer):
    user = get_user_model().objects.get(pk=customer.id)
    user.email, user.first_name, user.last_name = "ada@example.com", "Ada", "Lovelace"
    user.save()
    for query in ("ada@example.com", "Lovelace", str(customer.id), user.username):
        html = support.get("/admin/balances/account/", {"q": query}).content.decode()
        assert page(customer.id) in html, query


def test_only_a_superuser_sees_a_logins_password_button(support, customer):
    url = f"/admin/auth/user/{customer.id}/change/"
    staff_view = support.get(url)
    root = Client()
    root.force_login(get_user_model().objects.create_superuser("root"))
    superuser_view = root.get(url)

    assert staff_view.status_code == superuser_view.status_code == 200
    assert "Set password" not in staff_view.content.decode()
    assert "Set password" in superuser_view.content.decode()


def place(customer_id: int) -> Trade:
    return trade_place(customer_id=customer_id, ticker="AAPL", side="buy", quantity=1).trade


CANCEL_URL = "/admin/balances/account/trade/{}/cancel/"


def test_support_cancels_a_placed_trade_for_the_customer_and_not_one_in_flight(support, customer):
    in_flight, _ = place_and_send(customer.id, quantity=1)
    waiting = place(customer.id)
    assert 'value="Cancel for the customer"' in support.get(page(customer.id)).content.decode()

    assert support.post(CANCEL_URL.format(waiting.id), {"reason": "asked"}).status_code == 302
    assert support.post(CANCEL_URL.format(in_flight.id), {"reason": "x"}).status_code == 302

    assert "trade_not_cancellable" in messages_of(support, customer.id)
    assert Trade.objects.get(id=in_flight.id).status == "in_progress"
    cancelled = Trade.objects.get(id=waiting.id)
    assert cancelled.status == "cancelled"
    assert cancelled.reason == "cancelled by support for the customer"
    action = StaffAction.objects.get(kind="trade_cancelled")
    assert (action.trade_id, action.reason, action.customer_id) == (
        waiting.id,
        "asked",
        customer.id,
    )


def test_a_staff_member_without_the_permission_cannot_cancel(customer):
    viewer = logged_in(None, "viewer")
    trade = place(customer.id)
    response = viewer.post(CANCEL_URL.format(trade.id), {"reason": "x"})
    assert response.status_code == 403
    assert Trade.objects.get(id=trade.id).status == "placed"


def test_only_a_supervisor_is_offered_and_allowed_to_resolve(support, supervisor, customer):
    trade, _ = place_and_send(customer.id, quantity=1)
    button = 'value="Ask the exchange and resolve"'
    assert button in supervisor.get(page(customer.id)).content.decode()
    assert button not in support.get(page(customer.id)).content.decode()

    response = support.post(f"/admin/balances/account/trade/{trade.id}/resolve/", {"reason": "x"})

    assert response.status_code == 403
    assert Trade.objects.get(id=trade.id).status == "in_progress"


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("move", {"kind": "deposit", "amount": "5", "memo": "m", "idempotency_key": "admin-x"}),
        ("note", {"text": "hello"}),
        ("status", {"status": "trading_blocked", "reason": "x"}),
    ],
)
def test_a_staff_member_without_a_role_is_refused_every_action(customer, action, data):
    response = logged_in(None, "nobody").post(
        f"/admin/balances/account/{customer.id}/{action}/", data
    )
    assert response.status_code == 403
    assert not StaffMovement.objects.exists() and not StaffAction.objects.exists()
    assert Account.objects.get(customer_id=customer.id).status == "active"
