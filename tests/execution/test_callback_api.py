from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from balances.models import LedgerEntry
from tests.factories import callback_body, place_and_send, signed_headers
from trades.models import Trade

URL = "/exchange/callback/"
OTHER_SECRET = "whsec_b3RoZXItc2VjcmV0LW5vdC1vdXJzLTAwMDAwMA=="

pytestmark = pytest.mark.django_db


def post(client, body: bytes, headers: dict):
    return client.generic("POST", URL, body, content_type="application/json", **headers)


def test_a_signed_fill_settles_once_and_replays_change_nothing(client, customer):
    trade, _ = place_and_send(customer.id, quantity=2)
    body = callback_body(trade, price="99.5000")
    headers = signed_headers(body)

    first = post(client, body, headers)
    replay = post(client, body, headers)

    assert first.status_code == 200 and first.json() == {"result": "settled"}
    assert replay.status_code == 200 and replay.json() == {"result": "already_final"}
    assert Trade.objects.get(id=trade.id).status == "filled"
    assert LedgerEntry.objects.filter(trade=trade).count() == 2


def test_a_signed_rejection_releases(client, customer):
    trade, _ = place_and_send(customer.id, quantity=2)
    body = callback_body(trade, status="rejected")
    assert post(client, body, signed_headers(body)).json() == {"result": "settled"}
    assert Trade.objects.get(id=trade.id).status == "rejected"


def tampered(body: bytes) -> bytes:
    return body.replace(b'"99.5000"', b'"1.0000"')


@pytest.mark.parametrize(
    "attack",
    ["unsigned", "tampered", "wrong_secret", "stale", "future", "no_id", "garbage_signature"],
)
def test_forged_callbacks_are_refused_and_change_nothing(client, customer, attack):
    trade, _ = place_and_send(customer.id, quantity=2)
    body = callback_body(trade, price="99.5000")
    headers = signed_headers(body)
    if attack == "unsigned":
        headers = {}
    elif attack == "tampered":
        body = tampered(body)
    elif attack == "wrong_secret":
        headers = signed_headers(body, secret=OTHER_SECRET)
    elif attack == "stale":
        headers = signed_headers(body, at=datetime.now(UTC) - timedelta(minutes=6))
    elif attack == "future":
        headers = signed_headers(body, at=datetime.now(UTC) + timedelta(minutes=6))
    elif attack == "no_id":
        del headers["HTTP_WEBHOOK_ID"]
    elif attack == "garbage_signature":
        headers["HTTP_WEBHOOK_SIGNATURE"] = "v1,not base64!! v2"

    response = post(client, body, headers)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert Trade.objects.get(id=trade.id).status == "in_progress"
    assert not LedgerEntry.objects.filter(trade=trade).exists()


def test_a_rotated_in_secret_is_accepted_alongside_the_old_one(client, customer, settings):
    settings.EXCHANGE_WEBHOOK_SECRETS = [*settings.EXCHANGE_WEBHOOK_SECRETS, OTHER_SECRET]
    trade, _ = place_and_send(customer.id, quantity=2)
    body = callback_body(trade)
    assert post(client, body, signed_headers(body, secret=OTHER_SECRET)).status_code == 200


@override_settings(EXCHANGE_WEBHOOK_SECRETS=[])
def test_without_a_configured_secret_everything_is_refused(client, customer):
    trade, _ = place_and_send(customer.id, quantity=2)
    body = callback_body(trade)
    headers = signed_headers(body, secret=OTHER_SECRET)
    assert post(client, body, headers).status_code == 401


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        ({"quantity": 3}, 409, "report_mismatch"),
        ({"fill_price": "500.0000"}, 409, "report_mismatch"),
        # Values no settlement could store: refused, not a 500 on every retry.
        ({"fill_price": "1E+30"}, 409, "report_mismatch"),
        ({"fill_price": "0.00001"}, 409, "report_mismatch"),
        ({"exchange_order_id": "X" * 65}, 409, "report_mismatch"),
        ({"client_order_id": "424242"}, 404, "unknown_trade"),
        ({"fill_price": "abc"}, 400, "malformed_callback"),
        ({"status": "exploded"}, 400, "malformed_callback"),
    ],
)
def test_signed_but_wrong_reports_are_refused_and_change_nothing(
    client, customer, data, status, error
):
    trade, _ = place_and_send(customer.id, quantity=2)
    body = callback_body(trade, **data)

    response = post(client, body, signed_headers(body))

    assert response.status_code == status
    assert response.json()["error"] == error
    assert Trade.objects.get(id=trade.id).status == "in_progress"
    assert not LedgerEntry.objects.filter(trade=trade).exists()


def test_a_signed_body_that_is_not_an_object_is_refused(client):
    body = b"[1, 2, 3]"
    response = post(client, body, signed_headers(body))
    assert response.status_code == 400


@pytest.fixture
def callback_receiver(settings):
    """The callback receiver's own URLs and middleware (settings.callbacks)."""
    from settings import callbacks

    settings.ROOT_URLCONF = callbacks.ROOT_URLCONF
    settings.MIDDLEWARE = callbacks.MIDDLEWARE


def test_the_callback_receiver_settles_and_serves_nothing_else(client, customer, callback_receiver):
    trade, _ = place_and_send(customer.id, quantity=2)
    body = callback_body(trade)

    settled = post(client, body, signed_headers(body))
    forged = post(client, body, {})

    assert settled.status_code == 200 and settled.json() == {"result": "settled"}
    assert forged.status_code == 401 and forged.json()["error"] == "invalid_signature"
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz", HTTP_HOST="elsewhere.example").status_code == 400
    for hidden in ("/api/v1/trades/", "/admin/", "/api/docs/", "/api/schema/"):
        response = client.get(hidden)
        assert response.status_code == 404, hidden
        assert response.json()["error"] == "not_found"
