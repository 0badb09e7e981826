import pytest

from outbox.models import OutboxMessage
from outbox.sharding import shard_for_customer
from trades.models import Ticker, Trade
from trades.selectors import ticker_cache_clear

URL = "/api/v1/trades/"


def place(api, **body):
    return api.post(URL, body, format="json")


def nothing_written():
    return not Trade.objects.exists() and not OutboxMessage.objects.exists()


@pytest.mark.django_db
class TestPlaceTrade:
    def test_places_a_trade_with_its_outbox_row(self, api, customer):
        response = place(api, ticker="AAPL", side="buy", quantity=10, client_order_id="abc-1")

        assert response.status_code == 201
        body = response.json()
        assert body["ticker"] == "AAPL"
        assert body["side"] == "buy"
        assert body["quantity"] == 10
        assert body["status"] == "placed"
        assert body["reason"] is None
        assert body["client_order_id"] == "abc-1"
        assert body["created_at"]
        trade = Trade.objects.get(id=body["id"])
        assert trade.customer_id == customer.id
        assert trade.seq == 1
        outbox = OutboxMessage.objects.get()
        assert outbox.customer_id == customer.id
        assert outbox.shard == shard_for_customer(customer.id)

    def test_lower_case_ticker_is_normalised(self, api):
        response = place(api, ticker=" msft ", side="sell", quantity=1)
        assert response.status_code == 201
        assert response.json()["ticker"] == "MSFT"

    def test_sequence_numbers_follow_the_customers_order(self, api):
        ids = [place(api, ticker="AAPL", side="buy", quantity=1).json()["id"] for _ in range(3)]
        assert [Trade.objects.get(id=i).seq for i in ids] == [1, 2, 3]

    def test_customer_comes_from_the_token_not_the_body(self, api, customer, make_customer):
        other = make_customer()
        response = place(api, ticker="AAPL", side="buy", quantity=1, customer=other.id)
        assert response.status_code == 400
        assert response.json()["fields"] == {"customer": ["Unknown field."]}
        assert nothing_written()

    def test_replaying_a_client_order_id_returns_the_original(self, api):
        first = place(api, ticker="AAPL", side="buy", quantity=5, client_order_id="k")
        again = place(api, ticker="aapl", side="buy", quantity=5, client_order_id="k")

        assert first.status_code == 201
        assert again.status_code == 200
        assert again.json() == first.json()
        assert Trade.objects.count() == 1
        assert OutboxMessage.objects.count() == 1

    def test_a_retry_gets_its_order_back_even_after_the_ticker_was_deactivated(self, api):
        first = place(api, ticker="AAPL", side="buy", quantity=5, client_order_id="k")
        Ticker.objects.filter(symbol="AAPL").update(active=False)  # staff, in the admin
        ticker_cache_clear()

        again = place(api, ticker="aapl", side="buy", quantity=5, client_order_id="k")
        other_terms = place(api, ticker="AAPL", side="buy", quantity=6, client_order_id="k")
        new_key = place(api, ticker="AAPL", side="buy", quantity=5, client_order_id="k2")

        assert again.status_code == 200 and again.json() == first.json()
        assert other_terms.status_code == 400 and new_key.status_code == 400
        assert Trade.objects.count() == 1

    def test_reusing_a_client_order_id_for_other_terms_is_a_conflict(self, api, customer):
        place(api, ticker="AAPL", side="buy", quantity=5, client_order_id="k")
        response = place(api, ticker="AAPL", side="buy", quantity=6, client_order_id="k")

        assert response.status_code == 409
        assert response.json()["error"] == "client_order_id_reused"
        assert Trade.objects.count() == 1
        # The sequence number taken for the refused request was rolled back: no gap.
        assert place(api, ticker="AAPL", side="buy", quantity=1).status_code == 201
        assert sorted(Trade.objects.values_list("seq", flat=True)) == [1, 2]

    def test_client_order_ids_are_per_customer(self, api, make_customer):
        other = make_customer().client()
        assert (
            place(api, ticker="AAPL", side="buy", quantity=1, client_order_id="same").status_code
            == 201
        )
        assert (
            place(other, ticker="AAPL", side="buy", quantity=2, client_order_id="same").status_code
            == 201
        )
        assert Trade.objects.count() == 2


BAD_BODIES = [
    ({"side": "buy", "quantity": 1}, "ticker"),
    ({"ticker": "NOPE", "side": "buy", "quantity": 1}, "ticker"),
    ({"ticker": "AAPL" * 5, "side": "buy", "quantity": 1}, "ticker"),
    ({"ticker": 7, "side": "buy", "quantity": 1}, "ticker"),
    ({"ticker": "AAPL", "side": "hold", "quantity": 1}, "side"),
    ({"ticker": "AAPL", "side": "BUY", "quantity": 1}, "side"),
    ({"ticker": "AAPL", "quantity": 1}, "side"),
    ({"ticker": "AAPL", "side": "buy"}, "quantity"),
    ({"ticker": "AAPL", "side": "buy", "quantity": 0}, "quantity"),
    ({"ticker": "AAPL", "side": "buy", "quantity": -5}, "quantity"),
    ({"ticker": "AAPL", "side": "buy", "quantity": 1.5}, "quantity"),
    ({"ticker": "AAPL", "side": "buy", "quantity": 2.0}, "quantity"),
    ({"ticker": "AAPL", "side": "buy", "quantity": "10"}, "quantity"),
    ({"ticker": "AAPL", "side": "buy", "quantity": True}, "quantity"),
    ({"ticker": "AAPL", "side": "buy", "quantity": None}, "quantity"),
    ({"ticker": "AAPL", "side": "buy", "quantity": 10**6 + 1}, "quantity"),
    ({"ticker": "AAPL", "side": "buy", "quantity": 10**30}, "quantity"),
    ({"ticker": "AAPL", "side": "buy", "quantity": 1, "client_order_id": ""}, "client_order_id"),
    (
        {"ticker": "AAPL", "side": "buy", "quantity": 1, "client_order_id": "x" * 65},
        "client_order_id",
    ),
    (
        {"ticker": "AAPL", "side": "buy", "quantity": 1, "client_order_id": "has space"},
        "client_order_id",
    ),
    # A key is taken as sent: trimming " k" to "k" would replay a different order.
    *(
        ({"ticker": "AAPL", "side": "buy", "quantity": 1, "client_order_id": k}, "client_order_id")
        for k in (" k", "k ", "\tk\n", "k\n", "x" * 64 + "\n", 123, True, ["k"])
    ),
    # upper() maps the long s onto S: "ſpy" is not SPY.
    ({"ticker": "\u017fpy", "side": "buy", "quantity": 1}, "ticker"),
    ({"ticker": "AAPL", "side": "buy", "quantity": 1, "price": "1.00"}, "price"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_fields_are_refused_by_name_and_write_nothing(api, body, field):
    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert field in response.json()["fields"]
    assert nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("raw", "content_type", "status", "error"),
    [
        ('{"ticker": "AAPL",', "application/json", 400, "malformed_request"),
        ("[" * 5000 + "]" * 5000, "application/json", 400, "malformed_request"),
        # A key given twice is ambiguous, not "the last one wins".
        (
            '{"ticker": "AAPL", "side": "buy", "quantity": 1, "quantity": 7}',
            "application/json",
            400,
            "malformed_request",
        ),
        ("[1, 2]", "application/json", 400, "invalid_request"),
        ('"AAPL"', "application/json", 400, "invalid_request"),
        (
            "ticker=AAPL&side=buy&quantity=1",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        ("<trade/>", "application/xml", 415, "unsupported_media_type"),
        (
            '{"ticker": "AAPL", "side": "buy", "quantity": 1, "pad": "' + "x" * 20000 + '"}',
            "application/json",
            413,
            "request_too_large",
        ),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(api, raw, content_type, status, error):
    response = api.generic("POST", URL, raw, content_type=content_type)

    assert response.status_code == status
    assert response.json()["error"] == error
    assert nothing_written()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header", [None, "Token nope", "Bearer abc", "Token ", "Token " + "a" * 39 + "\x00"]
)
def test_missing_or_bad_token_is_401(client, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.post(
        URL,
        {"ticker": "AAPL", "side": "buy", "quantity": 1},
        content_type="application/json",
        **extra,
    )

    assert response.status_code == 401
    assert response.json()["error"] in {"not_authenticated", "authentication_failed"}
    assert nothing_written()


@pytest.mark.django_db
def test_a_user_without_an_account_cannot_trade(django_user_model):
    from rest_framework.test import APIClient

    from api_keys.services import api_key_issue

    user = django_user_model.objects.create_user(username="staff")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_issue(customer_id=user.id)}")

    response = client.post(URL, {"ticker": "AAPL", "side": "buy", "quantity": 1}, format="json")

    assert response.status_code == 403
    assert response.json()["error"] == "no_account"
    assert nothing_written()


@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_mid_request_is_a_503_to_retry(api, monkeypatch):
    """Persistent connections go unchecked between requests: one that a database restart
    broke fails its request with a 503 (not a 500), nothing is written, and the retry with
    the same key places the trade."""
    import psycopg
    from django.db import connection

    import trades.apis
    from devtools.stack import database_url

    real_trade_place = trades.apis.trade_place

    def trade_place_on_a_dead_connection(**order):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        with psycopg.connect(database_url(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
        return real_trade_place(**order)

    monkeypatch.setattr(trades.apis, "trade_place", trade_place_on_a_dead_connection)
    order = {"ticker": "AAPL", "side": "buy", "quantity": 1, "client_order_id": "k-503"}
    response = place(api, **order)

    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert response["Retry-After"] == "1"
    # What request_finished does in a server (the test client leaves it out).
    connection.close_if_unusable_or_obsolete()
    assert nothing_written()

    monkeypatch.setattr(trades.apis, "trade_place", real_trade_place)
    assert place(api, **order).status_code == 201
    assert Trade.objects.filter(client_order_id="k-503").count() == 1
