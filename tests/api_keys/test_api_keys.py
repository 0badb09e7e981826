"""Customers' API keys: kept only as digests, shown once, rotated and revoked at once; the
plain tokens kept before hashing are hashed in place and keep working."""

import importlib
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from api_keys.models import ApiKey
from api_keys.services import digest_of

pytestmark = pytest.mark.django_db

ACCOUNT = "/api/v1/account/"


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_the_database_keeps_only_a_digest_and_a_prefix(customer):
    stored = ApiKey.objects.get(customer_id=customer.id)

    assert stored.digest == digest_of(customer.token) != customer.token
    assert stored.prefix == customer.token[:12]
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(k)::text FROM api_keys_apikey k")
        assert all(customer.token not in row for (row,) in cursor.fetchall())


def test_a_key_authenticates_and_a_near_miss_does_not(customer):
    wrong = customer.token[:-1] + ("0" if customer.token[-1] != "0" else "1")

    assert client_with(customer.token).get(ACCOUNT).status_code == 200
    assert client_with(wrong).get(ACCOUNT).status_code == 401  # same prefix, other digest


def rotate(*args: str) -> dict:
    out = StringIO()
    call_command("rotate_token", *args, stdout=out)
    return json.loads(out.getvalue())


def test_rotating_issues_a_new_key_and_the_old_one_stops_at_once(customer):
    answer = rotate(str(customer.id))

    assert answer["customer_id"] == customer.id and answer["token"] != customer.token
    assert client_with(customer.token).get(ACCOUNT).status_code == 401
    assert client_with(answer["token"]).get(ACCOUNT).status_code == 200


def test_revoking_leaves_no_key_that_works(customer):
    assert rotate(str(customer.id), "--revoke") == {"customer_id": customer.id, "revoked": True}

    assert client_with(customer.token).get(ACCOUNT).status_code == 401
    assert not ApiKey.objects.filter(customer_id=customer.id).exists()


def test_a_customer_is_named_by_id_or_with_username_by_user_name(customer, django_user_model):
    django_user_model.objects.create_user(username=str(customer.id))  # a name like an id
    name = django_user_model.objects.get(id=customer.id).username

    by_id = rotate(str(customer.id))
    by_name = rotate(name, "--username")

    assert by_id["customer_id"] == by_name["customer_id"] == customer.id


@pytest.mark.parametrize("args", [["nobody"], ["nobody", "--username"], ["987654321"]])
def test_rotating_an_unknown_customer_is_refused(args):
    with pytest.raises(CommandError, match="no customer"):
        call_command("rotate_token", *args)


def test_a_token_kept_in_plain_text_before_is_hashed_in_place_and_keeps_working(customer):
    legacy = "0123456789abcdef0123456789abcdef01234567"
    ApiKey.objects.filter(customer_id=customer.id).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "created timestamptz NOT NULL, user_id integer NOT NULL)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [legacy, customer.id])
    migration = importlib.import_module("api_keys.migrations.0002_hash_the_tokens_issued_before")

    with connection.cursor() as cursor:
        cursor.execute(migration.HASH_AND_DROP_SQL)
        cursor.execute("SELECT to_regclass('authtoken_token')")
        assert cursor.fetchone() == (None,)  # the plain keys are gone with their table

    assert ApiKey.objects.get(customer_id=customer.id).digest == digest_of(legacy)
    assert client_with(legacy).get(ACCOUNT).status_code == 200
