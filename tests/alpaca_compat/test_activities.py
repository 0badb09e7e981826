"""GET /v2/account/activities: the ledger as Alpaca's activities, each one a valid
TradeActivity or NonTradeActivity of the pinned alpaca-py."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from alpaca.trading.models import NonTradeActivity, TradeActivity
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from alpaca_compat.shapes import order_id
from balances.models import LedgerEntry
from balances.movements import MovementTerms, movement_propose
from tests.factories import Customer, callback_body, place_and_send, signed_headers

pytestmark = pytest.mark.django_db
URL = "/v2/account/activities"


def alpaca(customer: Customer) -> APIClient:
    client = APIClient()
    client.credentials(
        HTTP_APCA_API_KEY_ID=customer.token[:12], HTTP_APCA_API_SECRET_KEY=customer.token
    )
    return client


def settle(client, trade) -> None:
    body = callback_body(trade, price="101.2500")
    response = client.generic(
        "POST",
        "/exchange/callback/",
        body,
        content_type="application/json",
        **signed_headers(body),
    )
    assert response.status_code == 200, response.content


def staff_move(customer_id: int, key: str, **terms) -> None:
    staff = get_user_model().objects.get_or_create(username="desk", is_staff=True)[0]
    staff.user_permissions.add(Permission.objects.get(codename="propose_movement"))
    staff = get_user_model().objects.get(pk=staff.pk)
    movement_propose(
        staff=staff,
        idempotency_key=key,
        terms=MovementTerms(customer_id=customer_id, memo="desk", **terms),
    )


@pytest.fixture
def history(client, make_customer):
    """Opened with cash and shares, one buy filled, a withdrawal, the withdrawal reversed,
    then shares out."""
    customer = make_customer(cash="1000.00", positions={"MSFT": 4})
    trade, _ = place_and_send(customer.id, quantity=2)
    settle(client, trade)
    staff_move(customer.id, "w", kind="withdrawal", amount=Decimal("5.00"))
    withdrawal = LedgerEntry.objects.get(customer_id=customer.id, kind="withdrawal")
    staff_move(customer.id, "r", kind="reversal", reverses=withdrawal.id)
    staff_move(customer.id, "o", kind="shares_out", ticker="MSFT", quantity=1)
    return customer, trade


def test_every_entry_is_one_activity_in_alpacas_shape_newest_first(history):
    customer, trade = history

    body = alpaca(customer).get(URL).json()

    assert [a["activity_type"] for a in body] == ["ACATS", "JNLC", "CSW", "FILL", "ACATS", "CSD"]
    fill = TradeActivity(**body[3])
    assert fill.order_id.int == trade.id and str(fill.order_id) == order_id(trade.id)
    assert (fill.symbol, fill.side, fill.qty, fill.cum_qty, fill.leaves_qty) == (
        "AAPL",
        "buy",
        2,
        2,
        0,
    )
    assert body[3]["price"] == "101.2500" and fill.order_status == "filled"
    assert body[3]["net_amount"] == "-202.50"
    non_trade = body[:3] + body[4:]
    others = [NonTradeActivity(**a) for a in non_trade]
    assert {a.account_id.int for a in others} == {customer.id}
    # Amounts as the JSON has them: alpaca-py's models hold them as floats.
    assert [(a["net_amount"], a["symbol"], a["qty"]) for a in non_trade] == [
        ("0", "MSFT", "-1"),
        ("5.00", None, None),
        ("-5.00", None, None),
        ("0", "MSFT", "4"),
        ("1000.00", None, None),
    ]


def test_types_categories_and_the_type_in_the_path(history):
    customer, _ = history
    api = alpaca(customer)

    def types(path=URL, **params):
        response = api.get(path, params)
        assert response.status_code == 200, response.content
        return [a["activity_type"] for a in response.json()]

    assert types(activity_types="FILL") == ["FILL"]
    assert types(activity_types="CSD,CSW") == ["CSW", "CSD"]
    assert types(activity_types="TRANS") == ["CSW", "CSD"]
    assert types(category="trade_activity") == ["FILL"]
    assert types(category="non_trade_activity") == ["ACATS", "JNLC", "CSW", "ACATS", "CSD"]
    assert types(f"{URL}/ACATS") == ["ACATS", "ACATS"]
    assert types(f"{URL}/DIV") == []


def test_pages_follow_the_last_id_in_either_direction(history):
    customer, _ = history
    api = alpaca(customer)
    everything = api.get(URL).json()

    for direction, expected in (("desc", everything), ("asc", everything[::-1])):
        seen, token = [], None
        while True:
            params = {"direction": direction, "page_size": 4}
            if token:
                params["page_token"] = token
            page = api.get(URL, params).json()
            if not page:
                break
            seen += page
            token = page[-1]["id"]
        assert seen == expected


def test_dates_and_times_bound_the_list(history):
    customer, _ = history
    api = alpaca(customer)
    everything = api.get(URL).json()
    today = everything[0]["date"]

    tomorrow = (date.fromisoformat(today) + timedelta(days=1)).isoformat()
    at = everything[3]["transaction_time"]  # one transaction: every entry's time

    assert api.get(URL, {"date": today}).json() == everything
    assert api.get(URL, {"date": f"{today}T23:59:59Z"}).json() == everything
    assert api.get(URL, {"after": today}).json() == everything
    assert api.get(URL, {"until": tomorrow}).json() == everything
    assert api.get(URL, {"until": today}).json() == []
    assert api.get(URL, {"after": tomorrow}).json() == []
    # Both bounds are exclusive.
    assert api.get(URL, {"after": at}).json() == []
    assert api.get(URL, {"until": at}).json() == []
    assert api.get(URL, {"date": "2001-01-01"}).json() == []
    assert api.get(URL, {"date": "9999-12-31"}).json() == []


def test_one_day_is_answered_whole_unless_a_page_size_is_given(customer):
    LedgerEntry.objects.bulk_create(
        LedgerEntry(customer_id=customer.id, kind="deposit", cash_amount=Decimal("1.00"))
        for _ in range(120)
    )
    api = alpaca(customer)
    today = api.get(URL).json()[0]["date"]
    day = LedgerEntry.objects.filter(customer_id=customer.id).count()
    assert day > 120

    assert len(api.get(URL).json()) == 100
    assert len(api.get(URL, {"date": today}).json()) == day
    assert len(api.get(URL, {"date": today, "page_size": 500}).json()) == day
    assert len(api.get(URL, {"date": today, "page_size": 7}).json()) == 7
    assert api.get(URL, {"page_size": 101}).status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"activity_types": "FILL,NOPE"},
        {"direction": "sideways"},
        {"page_size": "0"},
        {"page_size": "101"},
        {"date": "9999-12-32"},
        {"page_token": "not-an-id"},
        {"date": "2026-13-01"},
        {"date": "2026-12-01", "after": "2026-11-01"},
        {"after": "yesterday"},
        {"category": "dividends"},
    ],
)
def test_a_bad_parameter_is_a_422_in_alpacas_shape(customer, params):
    response = alpaca(customer).get(URL, params)
    assert response.status_code == 422, response.content
    assert response.json()["code"] == 42200000 and response.json()["message"]


def test_an_unknown_type_in_the_path_is_named(customer):
    response = alpaca(customer).get(f"{URL}/NOPE")
    assert response.status_code == 422
    assert response.json()["message"] == "invalid activity type: NOPE"
    both = alpaca(customer).get(f"{URL}/FILL", {"category": "trade_activity"})
    assert both.status_code == 422


def test_only_the_customers_own(history, make_customer):
    customer, _ = history
    other = make_customer(cash="1.00")
    assert [a["net_amount"] for a in alpaca(other).get(URL).json()] == ["1.00"]
    assert APIClient().get(URL).status_code == 401
