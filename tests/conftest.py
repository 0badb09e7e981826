from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from rest_framework.test import APIClient

from outbox.notify import shard_waker
from tests.factories import Customer, create_customer
from trades.selectors import ticker_cache_clear


@pytest.fixture
def make_customer(db) -> Callable[..., Customer]:
    return create_customer


@pytest.fixture
def customer(make_customer) -> Customer:
    return make_customer(cash="10000.00", positions={"AAPL": 10})


@pytest.fixture
def api(customer) -> APIClient:
    return customer.client()


@pytest.fixture(autouse=True)
def _fresh_ticker_cache() -> Iterator[None]:
    ticker_cache_clear()
    yield
    ticker_cache_clear()


@pytest.fixture(scope="session", autouse=True)
def _close_waker_connection(django_db_setup, django_db_blocker) -> Iterator[None]:
    yield
    # The test database cannot be dropped while the waker's session is connected to it.
    shard_waker().close()
