"""The soak's own database: a separate embedded cluster (or a fresh database on the server
of DATABASE_URL), plus the instrumentation the checks need."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg

from devtools import embedded_postgres
from devtools.database import recreate_database
from devtools.paths import REPO_ROOT

CHAOS_PGDATA = REPO_ROOT / ".pgdata-chaos"
CHAOS_DATABASE = "brokerage_chaos"

# Every status change of a trade, with who made it (the session's application_name) and
# the shard's lease as it stood at that moment; and every new epoch of a lease. Commit
# timestamps (track_commit_timestamp) of these rows then tell whether a leader's write
# committed after another holder had taken the shard.
INSTRUMENTATION_SQL = """
CREATE TABLE chaos_trade_write (
    id bigserial PRIMARY KEY,
    trade_id bigint NOT NULL,
    customer_id bigint NOT NULL,
    shard integer,
    old_status text NOT NULL,
    new_status text NOT NULL,
    writer text NOT NULL,
    lease_epoch bigint,
    lease_holder text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE chaos_lease_history (
    id bigserial PRIMARY KEY,
    shard integer NOT NULL,
    epoch bigint NOT NULL,
    holder text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION chaos_record_trade_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s integer;
    e bigint;
    h text;
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        SELECT shard INTO s FROM balances_account WHERE customer_id = NEW.customer_id;
        SELECT epoch, holder INTO e, h FROM outbox_shardlease WHERE shard = s;
        INSERT INTO chaos_trade_write
            (trade_id, customer_id, shard, old_status, new_status, writer, lease_epoch,
             lease_holder)
        VALUES (NEW.id, NEW.customer_id, s, OLD.status, NEW.status,
                regexp_replace(current_setting('application_name'), '^worker ', ''), e, h);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER chaos_trade_write AFTER UPDATE ON trades_trade
    FOR EACH ROW EXECUTE FUNCTION chaos_record_trade_write();
CREATE FUNCTION chaos_record_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chaos_lease_history (shard, epoch, holder)
    VALUES (NEW.shard, NEW.epoch, NEW.holder);
    RETURN NULL;
END $$;
CREATE TRIGGER chaos_lease_taken AFTER INSERT ON outbox_shardlease
    FOR EACH ROW EXECUTE FUNCTION chaos_record_lease();
CREATE TRIGGER chaos_lease_history AFTER UPDATE ON outbox_shardlease
    FOR EACH ROW WHEN (OLD.epoch IS DISTINCT FROM NEW.epoch)
    EXECUTE FUNCTION chaos_record_lease();
"""


@dataclass(frozen=True)
class Cluster:
    url: str
    # The embedded cluster's data directory; None when DATABASE_URL named the server.
    pgdata: Path | None

    @property
    def embedded(self) -> bool:
        return self.pgdata is not None


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(database)))


def with_application_name(url: str, name: str) -> str:
    """`url` whose Django connections announce themselves as `name` in pg_stat_activity."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"]
    query.append(("application_name", name))
    return urlunsplit(parts._replace(query=urlencode(query)))


def prepare_cluster() -> Cluster:
    """Start (or reach) the server and create a fresh, empty chaos database on it."""
    external = os.environ.get("DATABASE_URL")
    if external:
        admin_url, pgdata = with_database(external, "postgres"), None
    else:
        os.environ["EMBEDDED_PGDATA"] = str(CHAOS_PGDATA)
        embedded_postgres.ensure_running(CHAOS_PGDATA)
        admin_url, pgdata = embedded_postgres.database_url(CHAOS_PGDATA, "postgres"), CHAOS_PGDATA
    recreate_database(admin_url, CHAOS_DATABASE)
    return Cluster(url=with_database(external or admin_url, CHAOS_DATABASE), pgdata=pgdata)


def install_instrumentation(url: str) -> bool:
    """Create the write log; returns whether commit timestamps are available to order it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(INSTRUMENTATION_SQL)
        row = conn.execute("SELECT current_setting('track_commit_timestamp')").fetchone()
    return row is not None and row[0] == "on"
