"""A client retrying through a flaky network with its client_order_id: exactly one trade
per key, and never a server error that leaves half a write."""

import pytest
import requests
from django.conf import settings

from devtools.stack import Stack, database_url
from outbox.models import OutboxMessage
from tests.factories import create_customer
from tests.processes.faultproxy import FaultProxy
from trades.models import Trade

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def place_with_retries(url: str, token: str, key: str, attempts: int = 30) -> tuple[int, list]:
    """What a careful client does: the same client_order_id on every retry."""
    seen: list[int | str] = []
    body = {"ticker": "AAPL", "side": "buy", "quantity": 1, "client_order_id": key}
    headers = {"Authorization": f"Token {token}", "Connection": "close"}
    for _ in range(attempts):
        try:
            response = requests.post(url, json=body, headers=headers, timeout=5)
        except requests.RequestException as exc:
            seen.append(type(exc).__name__)
            continue
        seen.append(response.status_code)
        if response.status_code in (200, 201):
            return response.json()["id"], seen
    raise AssertionError(f"{key}: no answer after {attempts} attempts: {seen}")


def test_retries_through_a_flaky_network_make_exactly_one_trade_per_key(tmp_path):
    stack = Stack(tmp_path, database_url=database_url(), shard_count=settings.SHARD_COUNT)
    stack.start_web(workers=2)
    proxy = FaultProxy(
        stack.web_port,
        seed=1234,
        weights={"pass": 0.4, "delay": 0.2, "reset_before": 0.2, "drop_response": 0.2},
    )
    try:
        customer = create_customer(cash="100000.00")
        url = f"http://127.0.0.1:{proxy.port}/api/v1/trades/"
        results = [place_with_retries(url, customer.token, f"key-{n}") for n in range(40)]
    finally:
        proxy.close()
        stack.stop_all()

    statuses = [s for _, seen in results for s in seen if isinstance(s, int)]
    assert all(s < 500 for s in statuses), statuses
    assert proxy.injected["drop_response"] > 0 and proxy.injected["reset_before"] > 0
    trades = Trade.objects.filter(customer_id=customer.id)
    assert trades.count() == 40
    assert sorted(trades.values_list("client_order_id", flat=True)) == sorted(
        f"key-{n}" for n in range(40)
    )
    assert {trade_id for trade_id, _ in results} == set(trades.values_list("id", flat=True))
    assert OutboxMessage.objects.filter(customer_id=customer.id).count() == 40
    assert sorted(trades.values_list("seq", flat=True)) == list(range(1, 41))
