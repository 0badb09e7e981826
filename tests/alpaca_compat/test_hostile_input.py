"""Whatever a client sends to /v2/ is answered without a server error, and every refusal
is Alpaca's JSON error: random query parameters on each route, random order bodies and
random path segments."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balances.models import LedgerEntry
from tests.alpaca_compat.test_activities import alpaca
from tests.factories import create_customer
from trades.models import Trade

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
ROUTES = (
    "/v2/account",
    "/v2/account/activities",
    "/v2/account/activities/FILL",
    "/v2/orders",
    "/v2/orders:by_client_order_id",
    "/v2/positions",
    "/v2/assets",
    "/v2/clock",
)
PARAMETERS = (
    "status limit after until direction symbols side nested activity_types category date "
    "page_size page_token client_order_id"
).split()
text = st.text(max_size=40)
values = st.one_of(
    text,
    st.integers().map(str),
    st.sampled_from(
        ["", "0", "-1", "asc", "all", "FILL", "2026-12-03", "9999-12-31", "1e400", "NaN", "\x00"]
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
ORDER = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}


def post_json(api, body):
    """As a client might send it: NaN and Infinity included, which JSON does not allow."""
    return api.generic("POST", "/v2/orders", json.dumps(body), content_type="application/json")


def assert_clean(response) -> None:
    assert response.status_code < 500, (response.status_code, response.content[:300])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["code"], int) and isinstance(body["message"], str), body


@pytest.fixture
def customer(db):
    return create_customer(cash="50000.00", positions={"AAPL": 10})


@given(
    route=st.sampled_from(ROUTES),
    params=st.dictionaries(st.sampled_from(PARAMETERS) | text, values, max_size=4),
)
@FUZZ
def test_any_query_on_any_route(customer, route, params):
    assert_clean(alpaca(customer).get(route, params))


@given(
    changes=st.dictionaries(
        st.sampled_from([*ORDER, "client_order_id", "notional", "limit_price", "legs"]) | text,
        json_values,
        max_size=4,
    )
)
@FUZZ
def test_any_order_body(customer, changes):
    before = Trade.objects.count()
    response = post_json(alpaca(customer), ORDER | changes)
    assert_clean(response)
    if response.status_code != 200:
        assert Trade.objects.count() == before


@given(body=json_values)
@FUZZ
def test_any_json_at_all(customer, body):
    entries = LedgerEntry.objects.count()
    assert_clean(post_json(alpaca(customer), body))
    assert_clean(alpaca(customer).delete("/v2/orders"))
    assert LedgerEntry.objects.count() == entries


@given(segment=st.text(min_size=1, max_size=60).filter(lambda s: "/" not in s and "?" not in s))
@FUZZ
def test_any_id_or_symbol_in_the_path(customer, segment):
    from urllib.parse import quote

    api = alpaca(customer)
    for route in ("orders", "positions", "assets", "account/activities"):
        response = api.get(f"/v2/{route}/{quote(segment)}")
        assert_clean(response)
    assert_clean(api.delete(f"/v2/orders/{quote(segment)}"))


@pytest.mark.parametrize("route", ROUTES)
def test_a_nul_in_any_parameter_is_refused(customer, route):
    api = alpaca(customer)
    for name in PARAMETERS:
        response = api.get(route, {name: "AAPL\x00"})
        assert_clean(response)
        assert response.status_code == 422, (name, response.content)
