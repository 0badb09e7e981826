import json

import pytest
from django.core.management import call_command

from balances.models import Account, LedgerEntry


@pytest.mark.django_db
def test_account_shows_cash_and_positions_as_decimal_strings(make_customer):
    customer = make_customer(cash="1234.50", positions={"MSFT": 3, "AAPL": 10})

    body = customer.client().get("/api/v1/account/").json()

    assert body == {
        "cash": "1234.50",
        "held": "0.00",
        "available": "1234.50",
        "positions": [
            {"ticker": "AAPL", "quantity": 10, "held": 0},
            {"ticker": "MSFT", "quantity": 3, "held": 0},
        ],
        "status": "active",
        "status_reason": "",
    }


@pytest.mark.django_db
def test_create_customer_prints_a_working_token(capsys):
    call_command(
        "create_customer",
        "bob",
        "--cash",
        "10000.00",
        "--position",
        "aapl=10",
        "--email",
        "bob@example.com",
        "--full-name",
        "Bob van Dyke",
    )

    line = json.loads(capsys.readouterr().out.strip())
    account = Account.objects.get(customer_id=line["customer_id"])
    assert account.cash == 10000
    customer = account.customer
    assert (customer.email, customer.first_name, customer.last_name) == (
        "bob@example.com",
        "Bob",
        "van Dyke",
    )
    # Opening balances are movements too: they are in the ledger.
    assert LedgerEntry.objects.filter(customer_id=account.customer_id).count() == 2

    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {line['token']}")
    assert client.get("/api/v1/account/").json()["positions"][0]["ticker"] == "AAPL"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args",
    [
        ["--cash", "-1"],
        ["--cash", "abc"],
        ["--cash", "1.001"],
        ["--position", "NOPE=1"],
        ["--position", "AAPL=0"],
    ],
)
def test_create_customer_refuses_bad_arguments(args):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("create_customer", "carol", *args)
    assert not Account.objects.exists()


@pytest.mark.django_db
def test_seed_demo_makes_customers(capsys):
    call_command("seed_demo", "--count", "2")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    assert Account.objects.count() == 2
