"""GET /api/v1/events/: the event log by number, for clients that poll or catch up."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from api_keys.services import api_key_issue
from trades.services import trade_place

pytestmark = pytest.mark.django_db


def place(customer, count):
    for _ in range(count):
        trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1)


def test_events_are_read_in_order_after_the_last_one_seen(api, customer, make_customer):
    place(customer, 3)
    place(make_customer(), 2)  # someone else's

    page = api.get("/api/v1/events/").json()
    assert [e["seq"] for e in page["results"]] == [1, 2, 3, 4, 5]
    assert [e["type"] for e in page["results"]] == ["activity"] * 2 + ["trade_placed"] * 3
    assert page["last_seq"] == 5 and page["next"] is None
    assert set(page["results"][2]) == {"seq", "type", "created_at", "data"}

    caught_up = api.get("/api/v1/events/?after=5").json()
    assert caught_up == {"results": [], "last_seq": 5, "next": None}


def test_a_full_page_links_the_next_one(api, customer):
    place(customer, 3)

    first = api.get("/api/v1/events?limit=2").json()
    assert [e["seq"] for e in first["results"]] == [1, 2]
    assert first["next"].endswith("/api/v1/events?after=2&limit=2")
    second = api.get(first["next"]).json()
    assert [e["seq"] for e in second["results"]] == [3, 4]
    third = api.get(second["next"]).json()
    assert [e["seq"] for e in third["results"]] == [5] and third["next"] is None


@pytest.mark.parametrize(
    "query, field",
    [
        ("after=-1", "after"),
        ("after=1.5", "after"),
        ("after=x", "after"),
        (f"after={2**63}", "after"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=abc", "cursor"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(api, query, field):
    response = api.get(f"/api/v1/events/?{query}")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["fields"]


def test_without_a_token_it_is_a_401_and_without_an_account_a_403():
    assert APIClient().get("/api/v1/events/").status_code == 401
    staff = get_user_model().objects.create_user(username="staffer", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_issue(customer_id=staff.id)}")
    response = client.get("/api/v1/events/")
    assert response.status_code == 403 and response.json()["error"] == "no_account"
