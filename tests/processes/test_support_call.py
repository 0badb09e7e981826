"""The support call, end to end: "my order for 10 AAPL from this morning hasn't filled,
and my cash looks wrong". A real stack (web, callbacks, a shard worker, the exchange);
the support agent and the supervisor work in the admin through Django's test client.
After each step `manage.py audit` passes: the ledger reconciles."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from balances.models import Account, StaffMovement
from devtools.stack import Stack, database_url, wait_for
from staff_actions.models import StaffAction
from support.roles import SUPERVISOR, SUPPORT
from tests.factories import create_customer
from tests.processes.test_execution_processes import wait_until_all_terminal
from trades.models import Trade, TradeEvent

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.urls("brokerage.admin_urls"),
]


def staff(role: str, name: str) -> Client:
    user = get_user_model().objects.create_user(username=name, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def audit_passes() -> None:
    call_command("audit", stdout=StringIO())  # exits 1 (SystemExit) if an invariant is broken


def test_the_support_call(tmp_path, settings):
    stack = Stack(tmp_path, database_url=database_url(), shard_count=settings.SHARD_COUNT)
    try:
        stack.start_exchange("--fill-delay-ms", "1,5")
        stack.start_web(workers=1)
        stack.start_worker("leader", REAPER_IN_FLIGHT_DEADLINE="600")
        settings.EXCHANGE_URL = stack.exchange_url  # what the supervisor's resolve asks
        run_the_call(stack)
    finally:
        stack.stop_all()


def run_the_call(stack: Stack) -> None:
    customer = create_customer(cash="5000.00")
    user = get_user_model().objects.get(pk=customer.id)
    user.email, user.first_name, user.last_name = "ada@example.com", "Ada", "Lovelace"
    user.save()

    # This morning: the exchange was down when the order went out, and nothing re-sent it.
    stack.set_faults(outage=True)
    with requests.Session() as session:
        placed = stack.place(session, customer.token, ticker="AAPL", side="buy", quantity=10)
    assert placed.status_code == 201
    trade_id = placed.json()["id"]
    wait_for(
        lambda: TradeEvent.objects.filter(trade_id=trade_id, status=None).exists(),
        timeout=30,
        what="the failed send on the trade's timeline",
    )
    stack.set_faults(outage=False)
    assert Trade.objects.get(id=trade_id).status == "in_progress"
    held = Account.objects.get(customer_id=customer.id).cash_held
    assert held > 0  # "my cash looks wrong": it is held for the stuck buy
    audit_passes()

    agent = staff(SUPPORT, "sam")
    supervisor = staff(SUPERVISOR, "sue")
    page = f"/admin/balances/account/{customer.id}/change/"

    # 1. Find the customer by email.
    found = agent.get("/admin/balances/account/", {"q": "ada@example.com"})
    assert page in found.content.decode()

    # 2. See why the trade is stuck.
    html = agent.get(page).content.decode()
    assert "submit failed" in html and "503" in html
    assert str(held) in html

    # 3. The supervisor asks the exchange, which has no record of it: rejected, hold freed.
    resolved = supervisor.post(
        f"/admin/balances/account/trade/{trade_id}/resolve/",
        {"reason": "exchange down at send time; customer informed"},
    )
    assert resolved.status_code == 302
    trade = Trade.objects.get(id=trade_id)
    assert trade.status == "rejected"
    assert Account.objects.get(customer_id=customer.id).cash_held == 0
    audit_passes()

    # 4. Fund the account: the agent proposes, above the threshold; the supervisor approves.
    amount = settings.STAFF_APPROVAL_CASH_ABOVE + Decimal("0.01")
    agent.post(
        f"/admin/balances/account/{customer.id}/move/",
        {
            "kind": "deposit",
            "amount": str(amount),
            "memo": "wire received",
            "idempotency_key": "admin-wire-1",
        },
    )
    movement = StaffMovement.objects.get(customer_id=customer.id)
    assert movement.status == "pending"
    assert Account.objects.get(customer_id=customer.id).cash == Decimal("5000.00")
    audit_passes()
    supervisor.post(f"/admin/balances/account/movement/{movement.id}/approve/")
    assert Account.objects.get(customer_id=customer.id).cash == Decimal("5000.00") + amount
    audit_passes()

    # 5. Block trading, and unblock it.
    status_url = f"/admin/balances/account/{customer.id}/status/"
    supervisor.post(status_url, {"status": "trading_blocked", "reason": "verifying the wire"})
    with requests.Session() as session:
        blocked = stack.place(session, customer.token, ticker="AAPL", side="buy", quantity=10)
        assert blocked.status_code == 403
        assert blocked.json()["account_status"] == "trading_blocked"
        audit_passes()
        supervisor.post(status_url, {"status": "active", "reason": "wire verified"})
        again = stack.place(session, customer.token, ticker="AAPL", side="buy", quantity=10)
    assert again.status_code == 201
    wait_until_all_terminal(timeout=30)
    assert Trade.objects.get(id=again.json()["id"]).status == "filled"
    audit_passes()

    kinds = list(
        StaffAction.objects.filter(customer_id=customer.id)
        .order_by("id")
        .values_list("kind", flat=True)
    )
    assert kinds == [
        "trade_resolved",
        "movement_proposed",
        "movement_approved",
        "account_status",
        "account_status",
    ]
