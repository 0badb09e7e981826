"""Every field of each object in Alpaca's reference (tests/alpaca_compat/documented.py)
is in ours, with the JSON type Alpaca sends: a client written against Alpaca's documented
examples, not against our code, finds what it reads."""

from __future__ import annotations

import pytest

from tests.alpaca_compat import documented
from tests.alpaca_compat.test_activities import alpaca, settle
from tests.factories import place_and_send

pytestmark = pytest.mark.django_db


def assert_like_documented(ours: dict, example: dict) -> None:
    missing = set(example) - set(ours)
    assert not missing, f"missing {sorted(missing)}"
    for key, value in example.items():
        if value is None or (ours[key] is None and key in documented.UNKNOWN_HERE):
            continue
        assert type(ours[key]) is type(value), (key, ours[key], value)


@pytest.fixture
def traded(client, make_customer):
    customer = make_customer(cash="1000.00")
    trade, _ = place_and_send(customer.id, quantity=2)
    settle(client, trade)
    place_and_send(customer.id, quantity=1)
    return alpaca(customer)


def test_orders_in_each_state(traded):
    orders = traded.get("/v2/orders", {"status": "all"}).json()
    assert [o["status"] for o in orders] == ["new", "filled"]
    for order in orders:
        assert_like_documented(order, documented.ORDER)


def test_the_account_positions_assets_and_clock(traded):
    assert_like_documented(traded.get("/v2/account").json(), documented.ACCOUNT)
    [position] = traded.get("/v2/positions").json()
    assert_like_documented(position, documented.POSITION)
    assert_like_documented(traded.get("/v2/positions/AAPL").json(), documented.POSITION)
    assert_like_documented(traded.get("/v2/assets/AAPL").json(), documented.ASSET)
    assert_like_documented(traded.get("/v2/assets").json()[0], documented.ASSET)
    assert_like_documented(traded.get("/v2/clock").json(), documented.CLOCK)


def test_activities_and_errors(traded):
    activities = traded.get("/v2/account/activities").json()
    assert [a["activity_type"] for a in activities] == ["FILL", "CSD"]
    assert_like_documented(activities[0], documented.TRADE_ACTIVITY)
    assert_like_documented(activities[1], documented.NON_TRADE_ACTIVITY)
    refused = traded.get("/v2/account/activities/FFFFF")
    assert refused.status_code == 422
    assert_like_documented(refused.json(), documented.ERROR)
