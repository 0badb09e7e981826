"""A trade's timeline (trades.TradeEvent): its status changes are written by a trigger;
what the exchange said went wrong is written here, by whoever heard it."""

from __future__ import annotations

from django.db import connection

# The same error again (a retry failing as the one before did) is not written twice.
_ERROR_SQL = """
INSERT INTO trades_tradeevent (trade_id, status, at, actor, detail)
SELECT t.id, NULL, clock_timestamp(), left(current_setting('application_name'), 100),
       %(detail)s::varchar
FROM trades_trade t
WHERE t.id = %(trade_id)s::bigint
  AND NOT EXISTS (
        SELECT 1 FROM (SELECT detail, status FROM trades_tradeevent
                       WHERE trade_id = %(trade_id)s::bigint ORDER BY id DESC LIMIT 1) last
        WHERE last.status IS NULL AND last.detail = %(detail)s::varchar)
"""
MAX_DETAIL = 300


def trade_error_record(*, trade_id: int, detail: str) -> None:
    """Keep what went wrong with the trade at the exchange on its timeline (a send that
    failed, a report that disagreed): support sees it without the logs."""
    with connection.cursor() as cursor:
        cursor.execute(_ERROR_SQL, {"trade_id": trade_id, "detail": detail[:MAX_DETAIL]})


def staff_actor(name: str) -> None:
    """Name the staff member on the timeline of the trades this transaction changes."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('brokerage.actor', %s, true)", [f"staff {name}"])
