"""Customers with a password use the browsable API: they log in at DRF's login page and see
their own data only; a login without an account is told so; CSRF guards what a session
posts; and a staff member's admin session means nothing to the customer API."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, override_settings

from tests.factories import create_customer
from trades.services import trade_place

pytestmark = pytest.mark.django_db

LOGIN = "/api-auth/login/"


def logged_in_client(username: str, password: str, **client_options) -> Client:
    client = Client(**client_options)
    assert client.get(LOGIN).status_code == 200  # the form, and its CSRF cookie
    response = client.post(
        f"{LOGIN}?next=/api/v1/account/",
        {
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )
    assert response.status_code == 302 and response["Location"] == "/api/v1/account/"
    return client


def test_create_customer_with_a_password_prints_one_that_logs_in(capsys):
    call_command("create_customer", "ada", "--cash", "100.00", "--password")
    printed = json.loads(capsys.readouterr().out)

    client = logged_in_client("ada", printed["password"])

    page = client.get("/api/v1/account/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"100.00" in page.content
    assert client.get("/api/v1/account/").json()["cash"] == "100.00"


def test_a_logged_in_customer_sees_only_their_own_trades():
    mine, theirs = create_customer(), create_customer()
    User.objects.filter(id=mine.id).update(username="me")
    me = User.objects.get(id=mine.id)
    me.set_password("pw-of-mine")
    me.save()
    own = trade_place(customer_id=mine.id, ticker="AAPL", side="buy", quantity=1).trade
    other = trade_place(customer_id=theirs.id, ticker="AAPL", side="buy", quantity=1).trade

    client = logged_in_client("me", "pw-of-mine")

    assert [t["id"] for t in client.get("/api/v1/trades/").json()["results"]] == [own.id]
    assert client.get(f"/api/v1/trades/{other.id}/").status_code == 404


def test_a_session_must_carry_the_csrf_token_to_place_an_order():
    customer = create_customer()
    user = User.objects.get(id=customer.id)
    user.set_password("pw")
    user.save()
    client = logged_in_client(user.username, "pw", enforce_csrf_checks=True)
    order = {"ticker": "AAPL", "side": "buy", "quantity": 1}

    refused = client.post("/api/v1/trades/", order, content_type="application/json")
    placed = client.post(
        "/api/v1/trades/",
        order,
        content_type="application/json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )

    assert refused.status_code == 403 and refused.json()["error"] == "permission_denied"
    assert "CSRF" in refused.json()["detail"]
    assert placed.status_code == 201


def test_staff_are_refused_before_their_password_is_checked_or_counted(settings):
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_user("agent", password="pw", is_staff=True)
    client = Client()

    answers = [
        client.post(LOGIN, {"username": "agent", "password": p}) for p in ("x", "y", "z", "pw")
    ]

    assert [a.status_code for a in answers] == [200] * 4  # the form again, never a lockout
    assert "Staff sign in to the admin" in answers[-1].content.decode()
    assert "_auth_user_id" not in client.session
    # Not counted: the admin still lets them in.
    _admin_login(Client(), "agent")


def test_a_login_without_an_account_is_refused():
    User.objects.create_user("nobody", password="pw")

    response = Client().post(LOGIN, {"username": "nobody", "password": "pw"})

    assert response.status_code == 200 and "customer" in response.content.decode()


@override_settings(
    ROOT_URLCONF="brokerage.admin_urls", SESSION_COOKIE_NAME="brokerage_staff_session"
)
def _admin_login(client: Client, username: str = "boss") -> None:
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": "pw"})
    assert response.status_code == 302


def test_an_admin_session_means_nothing_to_the_customer_api():
    User.objects.create_superuser("boss", password="pw")
    client = Client()
    _admin_login(client)
    assert "brokerage_staff_session" in client.cookies

    response = client.get("/api/v1/account/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
