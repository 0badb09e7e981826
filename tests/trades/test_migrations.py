"""Migrations that must not stop trading while they run on a large, busy table."""

import importlib
import threading
import time
from types import SimpleNamespace

import psycopg
import pytest
from django.db import connection

from devtools.stack import database_url, wait_for

sent_has_terms = importlib.import_module("trades.migrations.0005_trade_sent_has_terms")


def constraint_state() -> tuple[bool, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = %s", [sent_has_terms.NAME]
        )
        return cursor.fetchone()


@pytest.mark.django_db(transaction=True)
def test_the_sent_terms_check_is_added_in_short_tries_behind_a_long_reader(monkeypatch):
    """Waiting for its lock behind a long read (an audit), the ADD would queue every
    placement and settlement behind it: it gives up after a second and tries again."""
    naps: list[float] = []
    monkeypatch.setattr(
        sent_has_terms, "time", SimpleNamespace(sleep=lambda s: (naps.append(s), time.sleep(s)))
    )
    sent_has_terms.drop_constraint(None, SimpleNamespace(connection=connection))
    failures: list[BaseException] = []

    def migrate() -> None:
        from django.db import connection as own

        try:
            sent_has_terms.add_constraint(None, SimpleNamespace(connection=own))
        except BaseException as exc:
            failures.append(exc)
        finally:
            own.close()

    with psycopg.connect(database_url()) as reader:
        reader.execute("SELECT count(*) FROM trades_trade")  # holds its lock until commit
        migration = threading.Thread(target=migrate)
        migration.start()
        try:
            wait_for(lambda: len(naps) >= 2, timeout=10, what="the ADD to give up and retry")
        finally:
            reader.commit()
            migration.join(timeout=30)
    assert not failures and constraint_state() == (True,)


@pytest.mark.django_db
def test_the_sent_terms_check_is_only_validated_when_already_there():
    sent_has_terms.add_constraint(None, SimpleNamespace(connection=connection))
    assert constraint_state() == (True,)
