"""The dedicated sessions (leader locks, LISTEN, wake-ups) connect as Django's do."""

from unittest import mock

import pytest
from django.db import connections

from outbox.connections import dedicated_connection


@pytest.mark.django_db
def test_dedicated_sessions_keep_the_connection_options_of_django_s_database():
    """A URL's ?sslmode=verify-full&sslcert=… or ?target_session_attrs=read-write must hold
    for every session: dropped, the lock and LISTEN sessions of a database that requires
    client certificates never connect (and no shard is ever led), or land on a standby."""
    options = connections["default"].settings_dict["OPTIONS"]
    extra = {"sslmode": "disable", "target_session_attrs": "read-write"}
    with mock.patch.dict(options, extra), dedicated_connection("test-options") as conn:
        used = conn.info.get_parameters()
        (name,) = conn.execute("SELECT current_setting('application_name')").fetchone()
    assert {key: used.get(key) for key in extra} == extra
    assert used["tcp_user_timeout"] == "10000" and used["keepalives_idle"] == "5"
    assert name == "test-options"


@pytest.mark.django_db
def test_a_lock_timeout_adds_to_the_session_options():
    with dedicated_connection("test-lock-timeout", lock_timeout="250ms") as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('lock_timeout', 'idle_in_transaction_session_timeout')"
            ).fetchall()
        )
    assert settings == {"lock_timeout": "250", "idle_in_transaction_session_timeout": "5000"}
