import json
from decimal import Decimal

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
            # Transferred in: no cost.
            {
                "ticker": "AAPL",
                "quantity": 10,
                "held": 0,
                "cost_basis": "0.00",
                "avg_entry_price": "0.0000",
            },
            {
                "ticker": "MSFT",
                "quantity": 3,
                "held": 0,
                "cost_basis": "0.00",
                "avg_entry_price": "0.0000",
            },
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


@pytest.mark.django_db
class TestActivities:
    URL = "/api/v1/account/activities/"

    def test_fills_and_movements_newest_first_filtered_by_type_and_time(self, client, customer):
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Permission

        from balances.movements import MovementTerms, movement_propose
        from tests.factories import callback_body, place_and_send, signed_headers

        trade, _ = place_and_send(customer.id, quantity=1)
        body = callback_body(trade)
        client.generic(
            "POST",
            "/exchange/callback/",
            body,
            content_type="application/json",
            **signed_headers(body),
        )
        staff = get_user_model().objects.create_user(username="s", is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="propose_movement"))
        staff = get_user_model().objects.get(pk=staff.pk)
        movement_propose(
            staff=staff,
            idempotency_key="w",
            terms=MovementTerms(
                customer_id=customer.id, kind="withdrawal", memo="internal", amount=Decimal("5")
            ),
        )
        api = customer.client()

        everything = api.get(self.URL).json()["results"]
        assert [a["type"] for a in everything] == [
            "withdrawal",
            "fill",
            "fill",
            "shares_in",
            "deposit",
        ]
        assert everything[0]["cash_amount"] == "-5.00" and "memo" not in everything[0]
        fills = api.get(self.URL, {"type": "fill"}).json()["results"]
        assert {a["trade_id"] for a in fills} == {trade.id}
        two = api.get(self.URL, {"type": "deposit,withdrawal"}).json()["results"]
        assert [a["type"] for a in two] == ["withdrawal", "deposit"]
        newest = everything[0]["created_at"]
        assert api.get(self.URL, {"after": newest}).json()["results"] == []
        assert len(api.get(self.URL, {"until": newest}).json()["results"]) == len(everything)

    def test_an_unknown_type_is_a_400_naming_it(self, customer):
        response = customer.client().get(self.URL, {"type": "fill,dividend"})
        assert response.status_code == 400
        assert "dividend" in response.json()["fields"]["type"][0]

    def test_only_the_customers_own(self, customer, make_customer):
        other = make_customer(cash="1.00")
        mine = customer.client().get(self.URL).json()["results"]
        theirs = other.client().get(self.URL).json()["results"]
        assert {a["id"] for a in mine}.isdisjoint({a["id"] for a in theirs})
