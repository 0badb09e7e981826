"""The web's /metrics: its processes' own metrics (brokerage.metrics) and what the database
knows at scrape time: who leads, the open trades and the outbox's backlog. Served by the
customer API's gunicorn only, so that each figure of the database is exported once."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from brokerage.metrics import exposition
from outbox.health import leadership_now
from trades.sql import OPEN_STATUSES

# Name -> help of every gauge read from the database.
SYSTEM_METRICS = {
    "brokerage_database_up": "1 if the database answered this scrape's queries, else 0.",
    "brokerage_shards": "Shards configured (SHARD_COUNT).",
    "brokerage_shards_leaderless": (
        "Shards without a leader whose lock session holds the shard and whose heartbeat is "
        "fresher than WORKER_LEASE_TIMEOUT."
    ),
    "brokerage_reapers_active": "Reapers holding the reaper lock (1 when healthy).",
    "brokerage_open_trades": "Trades not yet final, by status (placed, in_progress).",
    "brokerage_oldest_open_trade_age_seconds": (
        "Age of the oldest trade in each open status (0 when there is none)."
    ),
    "brokerage_outbox_rows_waiting": "Outbox rows waiting for a leader to take them.",
    "brokerage_oldest_outbox_row_age_seconds": (
        "Age of the oldest outbox row waiting (0 when there is none)."
    ),
}

_OPEN_TRADES_SQL = f"""
SELECT status, count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
FROM trades_trade WHERE status IN {OPEN_STATUSES} GROUP BY status
"""
_OUTBOX_SQL = """
SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
FROM outbox_outboxmessage
"""


def _gauge(name: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, SYSTEM_METRICS[name], labels=list(labels))


class SystemCollector:
    """The database's figures, read when scraped (a few index scans and pg_locks)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = _gauge("brokerage_database_up")
        try:
            leadership = leadership_now()
            with connection.cursor() as cursor:
                cursor.execute(_OPEN_TRADES_SQL)
                open_trades = {status: (count, age) for status, count, age in cursor.fetchall()}
                cursor.execute(_OUTBOX_SQL)
                outbox_rows, outbox_age = cursor.fetchone() or (0, 0.0)
        except DatabaseError:
            connection.close()
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        shards = _gauge("brokerage_shards")
        shards.add_metric([], len(leadership.shards))
        yield shards
        leaderless = _gauge("brokerage_shards_leaderless")
        leaderless.add_metric([], len(leadership.leaderless(settings.WORKER_LEASE_TIMEOUT)))
        yield leaderless
        reapers = _gauge("brokerage_reapers_active")
        reapers.add_metric([], 0 if leadership.reaper is None else 1)
        yield reapers
        count = _gauge("brokerage_open_trades", ("status",))
        oldest = _gauge("brokerage_oldest_open_trade_age_seconds", ("status",))
        for status in ("placed", "in_progress"):
            trades, age = open_trades.get(status, (0, 0.0))
            count.add_metric([status], trades)
            oldest.add_metric([status], age)
        yield count
        yield oldest
        waiting = _gauge("brokerage_outbox_rows_waiting")
        waiting.add_metric([], outbox_rows)
        yield waiting
        outbox_oldest = _gauge("brokerage_oldest_outbox_row_age_seconds")
        outbox_oldest.add_metric([], outbox_age)
        yield outbox_oldest


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    system = CollectorRegistry(auto_describe=False)
    system.register(SystemCollector())
    return HttpResponse(exposition(system), content_type=CONTENT_TYPE_LATEST)
