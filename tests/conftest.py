from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from balances.services import account_open
from outbox.notify import shard_waker
from trades.selectors import ticker_cache_clear

_names = itertools.count(1)


@dataclass
class Customer:
    id: int
    token: str

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {self.token}")
        return client


def create_customer(
    cash: Decimal | str = "10000.00", positions: dict[str, int] | None = None
) -> Customer:
    account = account_open(
        username=f"customer-{next(_names)}", cash=Decimal(cash), positions=positions or {}
    )
    token = Token.objects.create(user_id=account.customer_id)
    return Customer(id=account.customer_id, token=token.key)


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
