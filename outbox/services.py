from __future__ import annotations

import logging
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from outbox.notify import shard_waker

logger = logging.getLogger("outbox.services")

_STALE_OUTBOX_SHARDS_SQL = "SELECT DISTINCT shard FROM outbox_outboxmessage WHERE created_at < %s"
INSERT_SQL = """
INSERT INTO outbox_outboxmessage (shard, customer_id, created_at)
SELECT %(shard)s, %(customer_id)s, now() WHERE {condition}
"""


def outbox_enqueue(*, customer_id: int, shard: int, only_if: str = "true") -> None:
    """Record that the customer needs their shard leader's attention; with `only_if` (an SQL
    condition that may use %(customer_id)s), only when it holds.

    Must run inside the transaction that made the change; the shard is woken only
    after that transaction commits (and not at all if it rolls back)."""
    with connection.cursor() as cursor:
        cursor.execute(
            INSERT_SQL.format(condition=only_if), {"shard": shard, "customer_id": customer_id}
        )
        written = cursor.rowcount == 1
    if written:
        transaction.on_commit(lambda: shard_waker().wake(shard))


def renotify_stale_outbox(*, older_than: timedelta) -> int:
    """Wake the leaders of shards whose outbox rows have waited longer than `older_than`."""
    with connection.cursor() as cursor:
        cursor.execute(_STALE_OUTBOX_SHARDS_SQL, [timezone.now() - older_than])
        shards = [row[0] for row in cursor.fetchall()]
    waker = shard_waker()
    for shard in shards:
        waker.wake(shard)
        logger.info("event=reaper_renotified shard=%s", shard)
    if shards:
        waker.flush()
    return len(shards)
