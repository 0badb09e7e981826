"""Schemathesis against the app's own OpenAPI schema: no server errors, no responses the
schema does not describe, and no operation that ignores authentication."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from brokerage.wsgi import application
from tests.factories import create_customer

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
# The exchange's callback, in a schema of its own: signed by the exchange, no token.
callback_schema = schemathesis.openapi.from_wsgi("/exchange/schema/?format=json", application)

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@pytest.fixture(autouse=True)
def _keep_the_test_transactions_connection():
    """Calls go straight into the WSGI app, whose request signals would close the
    connection holding the test's transaction; Django's own test client does the same."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db):
    return create_customer(cash="50000.00", positions={"AAPL": 100}).token


@pytest.mark.django_db
@schema.parametrize()
@FUZZ
def test_authenticated_customer(case, token):
    # Business rules refuse some schema-valid orders (an unknown ticker is a clean 400),
    # and a cursor is opaque: one we never issued is a clean 400 too.
    refusable = case.operation.method == "post" or "cursor" in (case.query or {})
    excluded = [positive_data_acceptance] if refusable else []
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, excluded_checks=excluded)


@pytest.mark.django_db
@schema.parametrize()
@FUZZ
def test_without_credentials(case):
    response = case.call()
    assert response.status_code < 500
    try:
        match = resolve(case.formatted_path)
    except Resolver404:
        match = None
    if match is None or match.url_name == "not-found":
        assert response.status_code == 404  # e.g. /trades/abc/: no such URL at all
    else:
        assert response.status_code == 401, (case.method, case.formatted_path, response.status_code)


@pytest.mark.django_db
@callback_schema.parametrize()
@FUZZ
def test_the_exchange_callback_unsigned(case):
    """Whatever arrives unsigned is refused cleanly (a 401; a 400 for a body that is not
    even JSON; a 405 for another method) and matches the schema."""
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    if case.method == "OPTIONS":  # DRF describes the view; nothing is settled
        assert response.status_code == 200
    else:
        assert response.status_code in (400, 401, 405, 413, 415), (case.method, response.text)


def test_the_customers_docs_leave_the_exchange_callback_out():
    assert all(path.startswith("/api/") for path in schema.raw_schema["paths"])
    assert list(callback_schema.raw_schema["paths"]) == ["/exchange/callback/"]
