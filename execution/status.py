"""The system's state as an operator needs it: who leads each shard and how fresh, the
standbys, the backlog, the oldest waiting trades, the active reaper and whether the
exchange answers. `manage.py status` prints it."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection

from execution.exchange import quote_client
from outbox.health import Leadership, leadership_now
from trades.models import Ticker
from trades.sql import OPEN_STATUSES

_BACKLOG_SQL = """
SELECT shard, count(*), extract(epoch FROM now() - min(created_at))::float8
FROM outbox_outboxmessage GROUP BY shard
"""
_OLDEST_SQL = f"""
SELECT status, count(*), extract(epoch FROM now() - min(created_at))::float8
FROM trades_trade WHERE status IN {OPEN_STATUSES} GROUP BY status
"""


def system_status() -> dict[str, Any]:
    leadership = leadership_now()
    lease_timeout = settings.WORKER_LEASE_TIMEOUT
    with connection.cursor() as cursor:
        cursor.execute(_BACKLOG_SQL)
        backlog = {shard: (rows, age) for shard, rows, age in cursor.fetchall()}
        cursor.execute(_OLDEST_SQL)
        waiting = {status: (count, age) for status, count, age in cursor.fetchall()}
    leaderless = leadership.leaderless(lease_timeout)
    return {
        "ready": not leaderless and leadership.reaper is not None,
        "shards": [
            {
                "shard": state.shard,
                "leader": state.leader,
                "epoch": state.epoch,
                "heartbeat_age_s": _round(state.heartbeat_age_s),
                "led": state.led(lease_timeout),
                "outbox_rows": backlog.get(state.shard, (0, None))[0],
                "oldest_outbox_row_age_s": _round(backlog.get(state.shard, (0, None))[1]),
            }
            for state in leadership.shards
        ],
        "leaderless_shards": leaderless,
        "workers": _workers(leadership),
        "reaper": {"active": leadership.reaper, "standbys": leadership.standby_reapers},
        "open_trades": {
            status: {"count": waiting.get(status, (0, None))[0], "oldest_age_s": _round(age)}
            for status in ("placed", "in_progress")
            for age in [waiting.get(status, (0, None))[1]]
        },
        "outbox_rows": sum(rows for rows, _ in backlog.values()),
        "exchange": exchange_reachability(),
    }


def _workers(leadership: Leadership) -> list[dict[str, Any]]:
    return [
        {"name": name, "leads": len(shards), "role": "leader" if shards else "standby"}
        for name, shards in leadership.workers.items()
    ]


def exchange_reachability() -> dict[str, Any]:
    """Ask the exchange for one quote; how long it took, or why it failed."""
    ticker = Ticker.objects.order_by("symbol").values_list("symbol", flat=True).first()
    if ticker is None:
        return {"reachable": None, "detail": "no tickers to ask about"}
    started = time.monotonic()
    try:
        with quote_client() as client:
            client.quotes([ticker])
    except Exception as exc:  # any failure is the answer here
        return {"reachable": False, "url": settings.EXCHANGE_URL, "error": repr(exc)[:200]}
    elapsed = (time.monotonic() - started) * 1000
    return {"reachable": True, "url": settings.EXCHANGE_URL, "latency_ms": round(elapsed, 1)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
