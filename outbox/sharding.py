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


def shard_of_channel(channel: str) -> int:
    return int(channel.rsplit("_", 1)[1])


def parse_shards(text: str, shard_count: int) -> list[int]:
    """`all`, a list of numbers and ranges (`0-31,40`), or a part `K/N` (the K-th of N
    equal slices, counting from 1). Raises ValueError."""
    if text == "all":
        return list(range(shard_count))
    if "/" in text:
        part, _, parts = text.partition("/")
        k, n = int(part), int(parts)
        if not 1 <= k <= n <= shard_count:
            raise ValueError(f"want K/N with 1 <= K <= N <= {shard_count}")
        return [s for s in range(shard_count) if s * n // shard_count == k - 1]
    shards: set[int] = set()
    for item in text.split(","):
        low, _, high = item.partition("-")
        first, last = int(low), int(high or low)
        shards.update(range(first, last + 1))
    if not shards or min(shards) < 0 or max(shards) >= shard_count:
        raise ValueError(f"shards are 0 to {shard_count - 1}")
    return sorted(shards)
