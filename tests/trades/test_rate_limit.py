from datetime import timedelta

import pytest

from balances.models import Account
from trades.models import Trade

URL = "/api/v1/trades/"
BODY = {"ticker": "AAPL", "side": "buy", "quantity": 1}


@pytest.fixture
def tight_limit(settings):
    settings.PLACE_TRADE_RATE = 1.0
    settings.PLACE_TRADE_BURST = 3.0


@pytest.mark.django_db
def test_a_customer_over_the_limit_gets_429_with_retry_after(api, customer, tight_limit):
    statuses = [api.post(URL, BODY, format="json").status_code for _ in range(3)]
    refused = api.post(URL, BODY, format="json")

    assert statuses == [201, 201, 201]
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert int(refused["Retry-After"]) >= 1
    assert Trade.objects.count() == 3
    # The refused request took no sequence number.
    assert Account.objects.get(customer_id=customer.id).last_trade_seq == 3


@pytest.mark.django_db
def test_the_bucket_refills_with_time(api, customer, tight_limit):
    for _ in range(3):
        api.post(URL, BODY, format="json")
    account = Account.objects.get(customer_id=customer.id)
    Account.objects.filter(customer_id=customer.id).update(
        rate_updated_at=account.rate_updated_at - timedelta(seconds=2)
    )

    assert api.post(URL, BODY, format="json").status_code == 201
    assert api.post(URL, BODY, format="json").status_code == 201
    assert api.post(URL, BODY, format="json").status_code == 429


@pytest.mark.django_db
def test_limits_are_per_customer(api, make_customer, tight_limit):
    for _ in range(4):
        api.post(URL, BODY, format="json")
    other = make_customer().client()
    assert other.post(URL, BODY, format="json").status_code == 201
