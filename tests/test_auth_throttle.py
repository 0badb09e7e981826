import pytest
from django.core.cache import caches


@pytest.fixture(autouse=True)
def _clean_failures():
    caches["auth_failures"].clear()
    yield
    caches["auth_failures"].clear()


@pytest.mark.django_db
def test_guessing_tokens_is_throttled_but_valid_tokens_still_work(client, customer, settings):
    settings.AUTH_FAILURE_LIMIT = 5
    guesses = [
        client.get("/api/v1/account/", HTTP_AUTHORIZATION=f"Token guess{n}").status_code
        for n in range(8)
    ]

    assert guesses == [401] * 5 + [429] * 3
    throttled = client.get("/api/v1/account/", HTTP_AUTHORIZATION="Token nope")
    assert throttled.json()["error"] == "rate_limited"
    assert int(throttled["Retry-After"]) > 0
    valid = client.get("/api/v1/account/", HTTP_AUTHORIZATION=f"Token {customer.token}")
    assert valid.status_code == 200
