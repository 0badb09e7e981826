"""Input from a hostile or broken client or exchange: refused with a 4xx in JSON, never a
5xx, and nothing written."""

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balances.models import LedgerEntry
from tests.factories import callback_body, place_and_send, signed_headers
from trades.models import Trade

pytestmark = pytest.mark.django_db


def place(api, body: dict):
    """As JSON with every non-ASCII character escaped: lone surrogates survive the trip."""
    return api.generic("POST", "/api/v1/trades/", json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("key", ["k\u0000", "\udfff", "a\ud800b", "\u0000"])
def test_a_client_order_id_no_key_may_hold_is_a_400_not_a_500(api, key):
    response = place(api, {"ticker": "AAPL", "side": "buy", "quantity": 1, "client_order_id": key})

    assert response.status_code == 400
    assert response.json()["fields"].keys() == {"client_order_id"}
    assert not Trade.objects.exists()


# Any code point, lone surrogates and NUL included.
ANY_TEXT = st.text(alphabet=st.integers(0, 0x10FFFF).map(chr), max_size=70)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(key=st.one_of(st.none(), ANY_TEXT), ticker=ANY_TEXT)
def test_no_text_in_a_key_or_a_ticker_gives_a_server_error(api, key, ticker):
    body = {"ticker": ticker, "side": "buy", "quantity": 1}
    if key is not None:
        body["client_order_id"] = key

    response = place(api, body)

    assert response.status_code < 500, response.content
    assert response["Content-Type"] == "application/json"


def post_callback(client, body: bytes):
    return client.generic(
        "POST", "/exchange/callback/", body, content_type="application/json", **signed_headers(body)
    )


@pytest.mark.parametrize("executed_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_signed_fill_at_a_time_no_clock_can_hold_is_a_400(client, customer, executed_at):
    trade, _ = place_and_send(customer.id)

    response = post_callback(client, callback_body(trade, executed_at=executed_at))

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_callback"
    assert Trade.objects.get(id=trade.id).status == "in_progress"
    assert not LedgerEntry.objects.filter(trade=trade).exists()


@pytest.mark.parametrize(
    ("status", "field", "text"),
    [
        ("rejected", "reason", "bad\u0000reason"),
        ("rejected", "reason", "\udfff"),
        ("filled", "exchange_order_id", "X\u0000"),
        ("rejected", "exchange_order_id", "\ud800X"),
    ],
)
def test_a_signed_report_with_text_no_column_can_hold_is_a_400(
    client, customer, status, field, text
):
    trade, _ = place_and_send(customer.id)
    payload = json.loads(callback_body(trade, status=status))
    payload["data"][field] = text
    body = json.dumps(payload).encode()  # escaped: the lone surrogate survives

    response = post_callback(client, body)

    assert response.status_code == 400
    assert response.json()["error"] == "malformed_callback"
    assert Trade.objects.get(id=trade.id).status == "in_progress"


def test_a_signed_report_of_an_order_still_open_is_a_200_still_open(client, customer):
    trade, _ = place_and_send(customer.id)

    response = post_callback(client, callback_body(trade, status="open"))

    assert response.status_code == 200 and response.json() == {"result": "still_open"}
    assert Trade.objects.get(id=trade.id).status == "in_progress"


def test_a_post_that_fails_the_csrf_check_is_a_json_403():
    client = Client(enforce_csrf_checks=True)

    response = client.post("/healthz")

    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "csrf_failed"
