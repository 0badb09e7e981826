"""The metrics each unit of work counts, read back from this process's registry, and the
rules every metric follows (names, units, bounded labels)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
import responses
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from brokerage import metrics as catalogue
from execution.exchange_client import ExchangeClient, ExchangeRejectedRequest, OrderRequest
from execution.metrics import SYSTEM_METRICS
from tests.factories import callback_body, place_and_send, signed_headers

BASE = "http://exchange.test"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def moved(name: str, action: Callable[[], object], **labels: str) -> float:
    before = sample(name, **labels)
    action()
    return sample(name, **labels) - before


@pytest.mark.django_db(transaction=True)
def test_a_placement_counts_once_and_its_replay_not_again(api):
    def place():
        body = {"ticker": "AAPL", "side": "buy", "quantity": 1, "client_order_id": "m-1"}
        return api.post("/api/v1/trades/", body, format="json")

    assert moved("brokerage_trades_placed_total", place) == 1
    assert moved("brokerage_trades_placed_total", place) == 0
    created = {"view": "trades", "method": "POST", "status": "201"}
    replayed = {"view": "trades", "method": "POST", "status": "200"}
    assert moved("brokerage_http_requests_total", place, **replayed) == 1
    assert moved("brokerage_http_requests_total", place, **created) == 0


@pytest.mark.django_db(transaction=True)
def test_a_refused_placement_counts_no_trade(api):
    def refused():
        body = {"ticker": "AAPL", "side": "buy", "quantity": 0}
        assert api.post("/api/v1/trades/", body, format="json").status_code == 400

    assert moved("brokerage_trades_placed_total", refused) == 0
    assert moved(
        "brokerage_http_requests_total", refused, view="trades", method="POST", status="400"
    )


@pytest.mark.django_db(transaction=True)
def test_callbacks_count_by_result_forgeries_included(client, customer):
    trade, _ = place_and_send(customer.id, quantity=2)
    body = callback_body(trade)

    def post(headers: dict) -> Callable[[], object]:
        return lambda: client.generic(
            "POST", "/exchange/callback/", body, content_type="application/json", **headers
        )

    assert moved("brokerage_callbacks_total", post({}), result="invalid_signature") == 1
    settled = post(signed_headers(body))
    assert moved("brokerage_callbacks_total", settled, result="settled") == 1
    assert moved("brokerage_callbacks_total", settled, result="already_final") == 1
    assert sample("brokerage_trades_filled_total", side="buy") >= 1


def test_exchange_requests_count_by_outcome():
    order = OrderRequest(
        client_order_id="trade-1",
        account_id="acct-1",
        sequence=1,
        ticker="AAPL",
        side="buy",
        quantity=1,
        max_price=Decimal("10.00"),
        min_price=None,
        callback_url="http://web.test/cb",
    )
    with responses.RequestsMock() as mocked, ExchangeClient(base_url=BASE, retries=0) as client:
        mocked.post(f"{BASE}/orders", status=400, json={"error": "bad", "detail": "no"})
        mocked.post(f"{BASE}/orders", status=503, json={"error": "unavailable"})

        def refused():
            with pytest.raises(ExchangeRejectedRequest):
                client.submit_order(order)

        def unavailable():
            with pytest.raises(Exception, match="503"):
                client.submit_order(order)

        labels = {"operation": "submit_order"}
        assert moved("brokerage_exchange_requests_total", refused, outcome="refused", **labels)
        assert moved(
            "brokerage_exchange_requests_total", unavailable, outcome="unavailable", **labels
        )
    assert sample("brokerage_exchange_request_duration_seconds_count", **labels) >= 2


@pytest.mark.django_db(transaction=True)
def test_the_webs_metrics_add_the_databases_gauges(client, customer):
    place_and_send(customer.id, quantity=1)
    response = client.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    assert {*SYSTEM_METRICS} <= families.keys()
    gauges = {
        (s.name, s.labels.get("status")): s.value
        for name in SYSTEM_METRICS
        for s in families[name].samples
    }
    assert gauges[("brokerage_database_up", None)] == 1
    assert gauges[("brokerage_open_trades", "in_progress")] == 1
    assert gauges[("brokerage_open_trades", "placed")] == 0
    assert gauges[("brokerage_oldest_open_trade_age_seconds", "in_progress")] >= 0
    assert client.post("/metrics").status_code == 405


CATALOGUE = [
    metric for metric in vars(catalogue).values() if isinstance(metric, Counter | Gauge | Histogram)
]
FORBIDDEN_LABELS = {"customer", "customer_id", "trade", "trade_id", "ticker", "account", "user"}


@pytest.mark.parametrize("metric", CATALOGUE, ids=lambda m: m._name)
def test_every_metric_follows_prometheus_conventions(metric):
    name = metric._name
    assert name.startswith("brokerage_")
    if isinstance(metric, Gauge):
        assert not name.endswith("_total")
    if isinstance(metric, Histogram):
        assert name.endswith("_seconds")
    if "_age_" in name or "_duration_" in name:
        assert name.endswith("_seconds")
    assert not FORBIDDEN_LABELS & set(metric._labelnames)
    assert metric._documentation


def test_every_database_gauge_is_named_in_base_units():
    for name, help_text in SYSTEM_METRICS.items():
        assert name.startswith("brokerage_") and help_text
        assert not name.endswith("_total")
        if "_age_" in name:
            assert name.endswith("_seconds")
