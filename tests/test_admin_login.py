"""Staff logins are locked after repeated failures, per user name and per client, before
any more passwords are hashed; the lockout is a JSON 429."""

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

pytestmark = [pytest.mark.django_db, pytest.mark.urls("brokerage.admin_urls")]

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def agent():
    return User.objects.create_user("agent", password="right-password", is_staff=True)


def log_in(client: Client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


@override_settings(AXES_FAILURE_LIMIT=5)
def test_after_five_wrong_passwords_even_the_right_one_is_refused(client, agent):
    answers = [log_in(client, "agent", f"guess-{n}").status_code for n in range(5)]

    locked = log_in(client, "agent", "right-password")

    assert answers == [200] * 4 + [429]  # the form again, with its error; then locked
    assert locked.status_code == 429 and locked.json()["error"] == "login_locked_out"
    assert int(locked["Retry-After"]) > 0


@override_settings(AXES_FAILURE_LIMIT=5)
def test_one_user_name_guessed_from_many_addresses_is_locked(client, agent):
    for n in range(5):
        log_in(client, "agent", f"guess-{n}", address=f"10.0.1.{n}")

    assert log_in(client, "agent", "right-password", address="10.0.2.1").status_code == 429


@override_settings(AXES_FAILURE_LIMIT=5)
def test_one_client_guessing_many_user_names_is_locked(client, agent):
    for n in range(5):
        log_in(client, f"someone-{n}", "guess")

    assert log_in(client, "agent", "right-password").status_code == 429
    assert logged_in(log_in(Client(), "agent", "right-password", address="10.9.9.9"))


def test_a_good_login_is_not_held_up(client, agent):
    assert logged_in(log_in(client, "agent", "right-password"))


@override_settings(AXES_FAILURE_LIMIT=5)
def test_attempts_while_locked_out_neither_extend_the_lockout_nor_grow_the_record(client, agent):
    from axes.models import AccessAttempt

    for n in range(5):
        log_in(client, "agent", f"guess-{n}")
    first = AccessAttempt.objects.get()

    for n in range(10):
        assert log_in(client, "agent", f"more-{n}").status_code == 429

    again = AccessAttempt.objects.get()
    assert again.failures_since_start == first.failures_since_start == 5
    assert again.attempt_time == first.attempt_time
