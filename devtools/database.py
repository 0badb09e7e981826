"""A throwaway database for a run of the bench or the soak: dropped, created, migrated;
and `manage.py` against any database URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg import sql

from devtools.paths import REPO_ROOT


def recreate_database(maintenance_url: str, name: str) -> None:
    """Drop database `name` (disconnecting anyone left from an earlier run) and create it
    empty, through a session on `maintenance_url` (another database of the same server)."""
    with psycopg.connect(maintenance_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def manage(
    url: str, *args: str, check: bool = True, log_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `manage.py` on database `url` with the development settings. Its output is
    captured, or written to `log_file` when one is given."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DEBUG": "true",
        "DJANGO_SETTINGS_MODULE": "settings.base",
    }
    argv = [sys.executable, "manage.py", *args]
    if log_file is None:
        return subprocess.run(
            argv, cwd=REPO_ROOT, env=env, check=check, capture_output=True, text=True
        )
    with open(log_file, "w") as log:
        return subprocess.run(
            argv,
            cwd=REPO_ROOT,
            env=env,
            check=check,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


def migrate(url: str, *, log_file: Path | None = None) -> None:
    """`manage.py migrate` on database `url`."""
    manage(url, "migrate", "--noinput", log_file=log_file)
