"""Dedicated psycopg connections for LISTEN, advisory locks and wake-ups.

They are built from Django's database settings but are not Django's connection: a
session advisory lock or a LISTEN must live on one session we control, with TCP
keepalives so that a dead peer is noticed, and must never be closed or reused by
Django's request cycle."""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connection, connections


def connection_kwargs(alias: str = "default") -> dict[str, Any]:
    params = connections[alias].settings_dict
    kwargs = {
        "dbname": params["NAME"],
        "user": params.get("USER") or None,
        "password": params.get("PASSWORD") or None,
        "host": params.get("HOST") or None,
        "port": params.get("PORT") or None,
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }
    return {key: value for key, value in kwargs.items() if value is not None}


def dedicated_connection(
    application_name: str, alias: str = "default", lock_timeout: str | None = None
) -> psycopg.Connection:
    """An autocommit session of its own, named so operators can find it in pg_stat_activity."""
    kwargs = connection_kwargs(alias)
    if lock_timeout:
        kwargs["options"] = f"-c lock_timeout={lock_timeout}"
    return psycopg.connect(
        **kwargs,
        autocommit=True,
        application_name=application_name[:63],
    )


def django_session_lost() -> bool:
    """Whether Django's session itself is gone (restart, termination), not just a statement."""
    conn = connection.connection
    return conn is None or conn.closed or conn.broken


def configure_django_sessions(
    application_name: str, *, lock_timeout: str | None = None, alias: str = "default"
) -> None:
    """Name this process's Django sessions (reconnects included) in pg_stat_activity, and
    optionally bound how long any statement may wait for a lock."""
    options = connections[alias].settings_dict["OPTIONS"]
    options["application_name"] = application_name[:63]
    if lock_timeout:
        options["options"] = f"{options.get('options', '')} -c lock_timeout={lock_timeout}"
    connections[alias].close()
