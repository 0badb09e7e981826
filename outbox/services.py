from __future__ import annotations

from django.db import connection, transaction

from outbox.notify import shard_waker

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
