"""Dedicated psycopg connections for LISTEN, advisory locks and wake-ups.

They are built from Django's database settings but are not Django's connection: a
session advisory lock or a LISTEN must live on one session we control, with TCP
keepalives so that a dead peer is noticed, and must never be closed or reused by
Django's request cycle."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import Any

import psycopg
from django.db import DatabaseError, InterfaceError, OperationalError, connection, connections

logger = logging.getLogger("outbox.connections")

# Django's own database OPTIONS, and those our sessions set for themselves; every other
# option is a libpq connection parameter (sslmode, sslrootcert, target_session_attrs, …)
# and must reach the dedicated sessions too, or they would connect differently from the
# rest of the process: without TLS, without the client certificate, or to a standby.
_NOT_FOR_LIBPQ = frozenset(
    {
        "assume_role",
        "isolation_level",
        "pool",
        "server_side_binding",
        "prepare_threshold",
        "cursor_factory",
        "context",
        "application_name",
    }
)
# A dead peer is noticed within seconds: TCP keepalives for an idle session, and a bound
# on how long data we sent may stay unacknowledged (keepalives do not cover that case, and
# a statement sent into a network cut would otherwise wait about 15 minutes).
_LIVENESS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


def connection_kwargs(alias: str = "default") -> dict[str, Any]:
    """libpq parameters for a session of our own to Django's database `alias`."""
    params = connections[alias].settings_dict
    kwargs: dict[str, Any] = {
        key: value for key, value in params["OPTIONS"].items() if key not in _NOT_FOR_LIBPQ
    }
    kwargs.update(
        dbname=params["NAME"],
        user=params.get("USER") or None,
        password=params.get("PASSWORD") or None,
        host=params.get("HOST") or None,
        port=params.get("PORT") or None,
        **_LIVENESS,
    )
    kwargs.setdefault("connect_timeout", 5)
    return {key: value for key, value in kwargs.items() if value is not None}


class ServerIsStandby(psycopg.OperationalError):
    """A dedicated session reached a hot standby. An advisory lock taken there guards
    nothing (locks are not replicated: the primary, and every session on it, never see it)
    and LISTEN and NOTIFY are refused; the session was closed, and is tried again like a
    lost one."""


def dedicated_connection(
    application_name: str, alias: str = "default", lock_timeout: str | None = None
) -> psycopg.Connection:
    """An autocommit session of its own, named so operators can find it in pg_stat_activity,
    on a primary (raises ServerIsStandby otherwise)."""
    kwargs = connection_kwargs(alias)
    if lock_timeout:
        kwargs["options"] = _with_lock_timeout(kwargs.get("options"), lock_timeout)
    conn = psycopg.connect(
        **kwargs,
        autocommit=True,
        application_name=application_name[:63],
    )
    try:
        refuse_standby(conn, application_name)
    except BaseException:
        conn.close()
        raise
    return conn


def refuse_standby(conn: psycopg.Connection, session: str) -> None:
    """Raise ServerIsStandby, and say so in the log, if `conn` is on a server in recovery."""
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    if row is None or not row[0]:
        return
    logger.warning(
        "event=session_on_standby session=%r host=%s port=%s: the server is a standby (in "
        "recovery); not leading, listening or notifying until connected to a primary",
        session,
        conn.info.host,
        conn.info.port,
    )
    raise ServerIsStandby(
        f"{conn.info.host}:{conn.info.port} is a standby (in recovery), not a primary"
    )


def django_session_lost() -> bool:
    """Whether Django's session itself is gone (restart, termination), not just a statement."""
    conn = connection.connection
    return conn is None or conn.closed or conn.broken


def session_failed(exc: BaseException) -> bool:
    """Whether a database error is the session's or the server's, not the statement's: the
    session is gone, or the error says the connection failed or the server is going away
    (a restart can show as "server closed the connection unexpectedly" before the client
    has marked its connection bad). Such an error is nobody's data: retry on a new session."""
    if not isinstance(exc, DatabaseError):
        return False
    if django_session_lost():
        return True
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    if sqlstate is None:
        return isinstance(exc, OperationalError | InterfaceError)
    # 08: connection exception; 57P01-57P03: admin/crash shutdown, cannot connect now.
    return sqlstate.startswith("08") or sqlstate in {"57P01", "57P02", "57P03"}


def configure_django_sessions(
    application_name: str, *, lock_timeout: str | None = None, alias: str = "default"
) -> None:
    """Name this process's Django sessions (reconnects included) in pg_stat_activity, and
    optionally bound how long any statement may wait for a lock."""
    options = connections[alias].settings_dict["OPTIONS"]
    options["application_name"] = application_name[:63]
    if lock_timeout:
        options["options"] = _with_lock_timeout(options.get("options"), lock_timeout)
    connections[alias].close()


def _with_lock_timeout(options: str | None, lock_timeout: str) -> str:
    """libpq's `options` with a lock_timeout added (a later -c wins over an earlier one)."""
    return f"{options or ''} -c lock_timeout={lock_timeout}".strip()


def default_process_name() -> str:
    """host:pid and a random suffix. Standbys end a frozen holder's sessions by its name, so
    it must be unique: two containers can share a host name and both run as pid 1. The host
    name is cut so that the suffix survives Postgres's 63 characters of application_name
    behind our longest prefix ('leader reaper ')."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}"
