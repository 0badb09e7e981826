"""Which shard a customer belongs to: the same answer in every process and in SQL."""

from django.conf import settings

# Knuth's multiplicative hash spreads consecutive ids evenly; the SQL function
# outbox_shard_of(customer_id, shard_count) in migration 0001 computes the same value.
_MULTIPLIER = 2654435761
_MODULUS = 2**32


def shard_for_customer(customer_id: int, shard_count: int | None = None) -> int:
    count = shard_count if shard_count is not None else settings.SHARD_COUNT
    return (customer_id * _MULTIPLIER) % _MODULUS % count


def channel_for_shard(shard: int) -> str:
    """The LISTEN/NOTIFY channel that wakes the shard's leader."""
    return f"outbox_shard_{shard}"
