import base64
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from trades.models import Trade

URL = "/api/v1/trades/"


def place(api, **overrides):
    body = {"ticker": "AAPL", "side": "buy", "quantity": 1, **overrides}
    response = api.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def force_status(trade_id, status, **fields):
    Trade.objects.filter(id=trade_id).update(status=status, **fields)


def force_sent(trade_id):
    """In flight, with the terms the leader sends a trade with."""
    force_status(
        trade_id,
        "in_progress",
        submitted_at=timezone.now(),
        limit_price=Decimal("105"),
        cash_held=Decimal("105"),
    )


@pytest.mark.django_db
class TestRead:
    def test_detail_has_execution_fields(self, api):
        trade = place(api)
        body = api.get(f"{URL}{trade['id']}/").json()
        assert body["id"] == trade["id"]
        assert {"fill_price", "executed_at", "submitted_at"} <= body.keys()

    def test_list_is_newest_first_and_only_the_customers_own(self, api, make_customer):
        other = make_customer().client()
        place(other)
        mine = [place(api, quantity=q)["id"] for q in (1, 2, 3)]

        body = api.get(URL).json()

        assert [t["id"] for t in body["results"]] == list(reversed(mine))

    def test_cursor_pagination_walks_every_trade_once(self, api):
        mine = [place(api, quantity=q)["id"] for q in range(1, 6)]
        seen, url = [], f"{URL}?limit=2"
        while url:
            page = api.get(url).json()
            assert len(page["results"]) <= 2
            seen += [t["id"] for t in page["results"]]
            url = page["next"]
        assert seen == list(reversed(mine))

    @pytest.mark.parametrize("limit", ["2.0", "2.", "+2", " 2", "0", "-1", "two", "\u0662"])
    def test_a_page_size_that_is_not_plain_digits_is_refused(self, api, limit):
        place(api)

        response = api.get(URL, {"limit": limit})

        assert response.status_code == 400
        assert "limit" in response.json()["fields"]

    @pytest.mark.parametrize("position", ["p=abc", "r=1&p=1.5", "p="])
    def test_a_cursor_with_a_bad_position_is_a_400(self, api, position):
        place(api)
        cursor = base64.b64encode(position.encode()).decode()

        response = api.get(URL, {"cursor": cursor})

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_cursor"

    def test_the_largest_page_is_200(self, api, customer):
        Trade.objects.bulk_create(
            Trade(customer_id=customer.id, seq=n, ticker_id="AAPL", side="buy", quantity=1)
            for n in range(1, 206)
        )
        page = api.get(f"{URL}?limit=200").json()
        assert len(page["results"]) == 200
        assert page["next"]
        assert api.get(f"{URL}?limit=100000").status_code == 400

    def test_status_filter(self, api):
        a = place(api)
        place(api)
        api.post(f"{URL}{a['id']}/cancel/")

        body = api.get(f"{URL}?status=cancelled").json()

        assert [t["id"] for t in body["results"]] == [a["id"]]

    @pytest.mark.parametrize("query", ["status=done", "limit=0", "limit=x", "bogus=1"])
    def test_bad_list_parameters_are_400(self, api, query):
        response = api.get(f"{URL}?{query}")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"

    def test_unknown_trade_is_404(self, api):
        response = api.get(f"{URL}999999/")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


@pytest.mark.django_db
class TestCancel:
    def test_a_placed_trade_is_cancelled(self, api):
        trade = place(api)
        response = api.post(f"{URL}{trade['id']}/cancel/")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        assert Trade.objects.get(id=trade["id"]).status == "cancelled"

    @pytest.mark.parametrize("status", ["in_progress", "rejected", "cancelled"])
    def test_any_other_state_is_a_conflict(self, api, status):
        trade = place(api)
        if status == "cancelled":
            api.post(f"{URL}{trade['id']}/cancel/")
        elif status == "in_progress":
            force_sent(trade["id"])
        else:
            force_status(trade["id"], status)

        response = api.post(f"{URL}{trade['id']}/cancel/")

        assert response.status_code == 409
        assert response.json()["error"] == "trade_not_cancellable"
        assert Trade.objects.get(id=trade["id"]).status == status

    def test_filled_is_a_conflict(self, api):
        trade = place(api)
        force_sent(trade["id"])
        with connection.cursor() as c:
            c.execute(
                "UPDATE trades_trade SET status='filled', fill_price=1, executed_at=now() "
                "WHERE id=%s",
                [trade["id"]],
            )
        assert api.post(f"{URL}{trade['id']}/cancel/").status_code == 409


@pytest.mark.django_db
class TestOtherCustomersTrades:
    """B learns nothing about A's trades: the same 404 as for a trade that never existed."""

    def test_read_list_filter_and_cancel_are_invisible(self, api, make_customer):
        trade = place(api, client_order_id="secret")
        intruder = make_customer().client()

        assert intruder.get(f"{URL}{trade['id']}/").status_code == 404
        assert intruder.get(URL).json()["results"] == []
        assert intruder.get(f"{URL}?status=placed").json()["results"] == []
        cancel = intruder.post(f"{URL}{trade['id']}/cancel/")
        assert cancel.status_code == 404
        assert cancel.json() == intruder.get(f"{URL}999999/").json()
        assert Trade.objects.get(id=trade["id"]).status == "placed"
        # The intruder's idempotency keys are their own: no collision, no leak.
        assert (
            intruder.post(
                URL,
                {"ticker": "AAPL", "side": "sell", "quantity": 9, "client_order_id": "secret"},
                format="json",
            ).status_code
            == 201
        )

    def test_unauthenticated_reads_are_401(self, client, api):
        trade = place(api)
        assert client.get(URL).status_code == 401
        assert client.get(f"{URL}{trade['id']}/").status_code == 401
        assert client.post(f"{URL}{trade['id']}/cancel/").status_code == 401
        assert client.get("/api/v1/account/").status_code == 401


@pytest.mark.django_db
class TestFiltersAndConventions:
    def test_each_filter_narrows_the_list(self, api):
        a = place(api, ticker="AAPL", side="buy", client_order_id="mine-1")
        b = place(api, ticker="MSFT", side="sell", quantity=1)
        api.post(f"{URL}{a['id']}/cancel/")

        def ids(**query):
            response = api.get(URL, query)
            assert response.status_code == 200, response.content
            return [t["id"] for t in response.json()["results"]]

        assert ids(status="open") == [b["id"]]
        assert ids(status="closed") == [a["id"]]
        assert ids(ticker="msft") == [b["id"]]
        assert ids(side="buy") == [a["id"]]
        assert ids(client_order_id="mine-1") == [a["id"]]
        created = Trade.objects.get(id=b["id"]).created_at
        assert ids(created_before=created.isoformat()) == [a["id"]]
        assert ids(created_after=created.isoformat()) == []

    def test_every_trade_says_when_it_changed_and_ended(self, api):
        trade = place(api)
        cancelled = api.post(f"{URL}{trade['id']}/cancel/").json()
        assert trade["finished_at"] is None and trade["updated_at"] == trade["created_at"]
        assert cancelled["finished_at"] and cancelled["updated_at"] == cancelled["finished_at"]

    def test_a_refused_cancel_carries_the_trade(self, api):
        trade = place(api)
        force_sent(trade["id"])
        response = api.post(f"{URL}{trade['id']}/cancel/")
        assert response.status_code == 409
        assert response.json()["trade"]["status"] == "in_progress"

    def test_cancel_all_cancels_the_placed_and_says_so_for_each(self, api):
        sent, waiting = place(api), place(api)
        force_sent(sent["id"])
        response = api.post(f"{URL}cancel-all/")
        assert response.status_code == 200
        outcomes = {r["trade"]["id"]: r["outcome"] for r in response.json()["results"]}
        assert outcomes == {sent["id"]: "not_cancellable", waiting["id"]: "cancelled"}
        assert Trade.objects.get(id=waiting["id"]).status == "cancelled"

    def test_a_route_without_its_trailing_slash_answers_the_same(self, api):
        response = api.post(
            URL.rstrip("/"), {"ticker": "AAPL", "side": "buy", "quantity": 1}, format="json"
        )
        assert response.status_code == 201
        assert api.get(f"{URL}{response.json()['id']}").status_code == 200

    def test_a_page_above_the_cap_or_a_bad_cursor_is_a_clear_400(self, api):
        place(api)
        too_big = api.get(URL, {"limit": "201"})
        assert too_big.status_code == 400 and "limit" in too_big.json()["fields"]
        bad = api.get(URL, {"cursor": "not-a-cursor"})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_cursor"

    def test_an_unknown_url_is_a_json_404_with_debug_on_too(self, api, settings):
        settings.DEBUG = True
        response = api.get("/api/v1/nothing-here/")
        assert response.status_code == 404 and response.json()["error"] == "not_found"
        assert api.post("/api/v1/nothing-here/").status_code == 404


@pytest.mark.django_db
class TestTickers:
    def test_search_and_detail(self, api):
        found = api.get("/api/v1/tickers/", {"search": "AAP"}).json()["results"]
        assert {"symbol": "AAPL", "name": found[0]["name"], "tradable": True} in found
        assert api.get("/api/v1/tickers/aapl/").json()["symbol"] == "AAPL"
        missing = api.get("/api/v1/tickers/NOPE/")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"

    def test_the_active_filter(self, api):
        from trades.models import Ticker

        Ticker.objects.filter(symbol="MSFT").update(active=False)
        inactive = api.get("/api/v1/tickers/", {"active": "false", "limit": 200}).json()
        assert [t["symbol"] for t in inactive["results"]] == ["MSFT"]
        assert api.get("/api/v1/tickers/", {"active": "maybe"}).status_code == 400

    def test_tickers_need_a_token(self, client):
        assert client.get("/api/v1/tickers/").status_code == 401
