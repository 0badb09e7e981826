from __future__ import annotations

from django.db import connection, transaction

from outbox.notify import shard_waker

INSERT_SQL = (
    "INSERT INTO outbox_outboxmessage (shard, customer_id, created_at) VALUES (%s, %s, now())"
)


def outbox_enqueue(*, customer_id: int, shard: int) -> None:
    """Record that the customer needs their shard leader's attention.

    Must run inside the transaction that made the change; the shard is woken only
    after that transaction commits (and not at all if it rolls back)."""
    with connection.cursor() as cursor:
        cursor.execute(INSERT_SQL, (shard, customer_id))
    transaction.on_commit(lambda: shard_waker().wake(shard))
