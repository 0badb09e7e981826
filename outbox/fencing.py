"""Fencing: a shard leader's writes take effect only while its epoch is the shard's epoch."""

from __future__ import annotations

from django.db import connection


class StaleLeader(Exception):
    """This process no longer leads the shard; its transaction must not commit."""


def fence_check(*, shard: int, epoch: int) -> None:
    """Inside the caller's transaction: share-lock the shard's lease row and check the epoch.

    A new leader bumps the epoch with an UPDATE, which waits for this share lock; so
    either this transaction commits before the takeover, or it sees the new epoch and
    raises StaleLeader. A deposed leader can never commit after it was replaced."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT epoch FROM outbox_shardlease WHERE shard = %s FOR SHARE", [shard])
        row = cursor.fetchone()
    if row is None or row[0] != epoch:
        raise StaleLeader(f"shard {shard}: epoch {epoch} is no longer current ({row and row[0]})")
