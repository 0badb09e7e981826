"""The bench database: where it lives, whether a load finished in it, auditing it
(devtools.database recreates and migrates it)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from devtools import embedded_postgres
from devtools.database import manage

# Bump the version when the loaded data's rules change (e.g. how a fill's cash is rounded),
# so that --reuse loads again instead of auditing old rows by new rules.
LOADED_MARK = "brokerage bench v3: customers={customers} trades={trades}"


def bench_urls(name: str) -> tuple[str, str]:
    """(maintenance URL, bench URL): DATABASE_URL's server if set, else the embedded one."""
    base = os.environ.get("DATABASE_URL")
    if not base:
        base = embedded_postgres.ensure_running()
    parts = urlsplit(base)
    if name in (parts.path.lstrip("/"), "postgres", "template0", "template1"):
        raise SystemExit(f"refusing to use (and drop) database {name!r} for the benchmark")
    bench = urlunsplit(parts._replace(path=f"/{name}"))
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    return maintenance, bench


def loaded_mark(maintenance_url: str, name: str) -> str | None:
    """The comment a finished load leaves on the database, or None if it never finished."""
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
    return row[0] if row else None


def mark_loaded(maintenance_url: str, name: str, *, customers: int, trades: int) -> None:
    """Record on the database itself that a load of this size finished in it."""
    mark = LOADED_MARK.format(customers=customers, trades=trades)
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), mark))


def audit(url: str, *, quiescent: bool) -> tuple[bool, str]:
    """`manage.py audit`: (every invariant holds, its report)."""
    result = manage(url, "audit", *(["--quiescent"] if quiescent else []), check=False)
    return result.returncode == 0, (result.stdout + result.stderr).strip()
