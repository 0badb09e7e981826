"""A throwaway primary and a hot standby streaming from it, for the tests of what our
sessions do when they land on a standby."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devtools import embedded_postgres
from devtools.database import migrate
from devtools.stack import wait_for

_REPLAYED_AND_STREAMING_SQL = """
SELECT pg_is_in_recovery()
  AND (to_regclass('outbox_shardlease') IS NOT NULL OR NOT %s)
  AND EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')
"""
ADVISORY_LOCKS_SQL = """
SELECT l.pid, a.application_name FROM pg_locks l LEFT JOIN pg_stat_activity a USING (pid)
WHERE l.locktype = 'advisory'
"""


@dataclass(frozen=True)
class PrimaryAndStandby:
    primary_url: str
    standby_url: str
    standby_pgdata: Path

    def standby_server_log(self) -> str:
        return (self.standby_pgdata / "server.log").read_text(errors="replace")


@contextmanager
def primary_and_hot_standby(*, migrated: bool) -> Iterator[PrimaryAndStandby]:
    """A new primary (with our schema if `migrated`) and a hot standby of it that has
    replayed it and streams from it; both are stopped and removed afterwards."""
    # Not under pytest's tmp_path, whose parents only their owner may enter: as root, the
    # servers run as another user.
    root = Path(tempfile.mkdtemp(prefix="brokerage-standby-"))
    os.chmod(root, 0o755)
    primary, standby = root / "primary", root / "standby"
    try:
        primary_url = embedded_postgres.ensure_running(primary)
        if migrated:
            migrate(primary_url)
        standby_url = embedded_postgres.start_hot_standby(primary, standby)
        with psycopg.connect(standby_url, autocommit=True) as conn:
            wait_for(
                lambda: (
                    conn.execute(_REPLAYED_AND_STREAMING_SQL, (migrated,)).fetchone() == (True,)
                ),
                timeout=30,
                what="the standby to replay the schema and stream from the primary",
            )
        yield PrimaryAndStandby(primary_url, standby_url, standby)
    finally:
        for pgdata in (standby, primary):
            embedded_postgres.stop(pgdata, mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def advisory_locks(url: str) -> list[tuple[int, str | None]]:
    """Every advisory lock on the server at `url`, with its session's pid and name."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(ADVISORY_LOCKS_SQL).fetchall()
