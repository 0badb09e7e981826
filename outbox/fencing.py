"""Fencing: a shard leader's writes take effect only while its epoch is the shard's epoch.

Every transaction a leader makes share-locks its shard's lease row (`FOR SHARE`) and
checks the epoch there. A new leader bumps the epoch with an UPDATE, which waits for that
share lock; so either the old leader's transaction commits before the takeover, or it
sees the new epoch and rolls back. A deposed leader can never commit after it was
replaced."""

from __future__ import annotations

# The epoch, share-locked: embed in a leader's statement as a scalar subquery.
LEASE_EPOCH_SQL = "(SELECT epoch FROM outbox_shardlease WHERE shard = %(shard)s FOR SHARE)"


class StaleLeader(Exception):
    """This process no longer leads the shard; its transaction must not commit."""


def check_epoch(*, shard: int, mine: int, current: int | None) -> None:
    if current != mine:
        raise StaleLeader(f"shard {shard}: epoch {mine} is no longer current ({current})")
