import threading

import pytest
from django.db import connection
from django.test import Client


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


@pytest.mark.django_db
def test_a_throttled_client_is_let_in_again_once_its_window_has_passed(client, settings):
    """The window runs from the first failure; further failures do not extend it."""
    settings.AUTH_FAILURE_LIMIT, settings.AUTH_FAILURE_WINDOW = 2, 300
    statuses = [client.get("/api/v1/account/", HTTP_AUTHORIZATION="Token x").status_code]
    statuses += [client.get("/api/v1/account/", HTTP_AUTHORIZATION="Token x").status_code]
    statuses += [client.get("/api/v1/account/", HTTP_AUTHORIZATION="Token x").status_code]
    with connection.cursor() as cursor:  # as if the window had begun 301 s ago
        cursor.execute(
            "UPDATE brokerage_auth_failure SET window_started_at = now() - interval '301 s'"
        )

    again = client.get("/api/v1/account/", HTTP_AUTHORIZATION="Token x").status_code

    assert statuses == [401, 401, 429] and again == 401


@pytest.mark.django_db(transaction=True)
def test_parallel_failures_are_all_counted(settings):
    settings.AUTH_FAILURE_LIMIT = 20
    with connection.cursor() as cursor:  # not a model's table: a flush leaves it as it was
        cursor.execute("DELETE FROM brokerage_auth_failure")
    statuses: list[int] = []
    start = threading.Barrier(8)

    def guess() -> None:
        start.wait()
        for _ in range(5):
            response = Client().get("/api/v1/account/", HTTP_AUTHORIZATION="Token guess")
            statuses.append(response.status_code)
        connection.close()

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [401] * 20 + [429] * 20
