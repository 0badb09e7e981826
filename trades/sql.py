"""SQL fragments spelled from the models' constants, for the hand-written statements of the
hot paths, the reaper and the audit. They are literals rather than parameters so that
Postgres can match them against the partial indexes in generic plans too."""

from __future__ import annotations

from collections.abc import Iterable

from trades.models import Trade


def sql_literals(values: Iterable[str]) -> str:
    """`('a', 'b')` for trusted constants (never for anything a client sent)."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


# `status IN <this>`: the trades not yet final (matches the index trade_open_by_customer).
OPEN_STATUSES = sql_literals(Trade.OPEN)

# The customer needs their shard leader again only if a trade of theirs is waiting: the
# condition of outbox_enqueue after a trade is settled or rejected.
HAS_PLACED_TRADE = (
    "EXISTS (SELECT FROM trades_trade WHERE customer_id = %(customer_id)s "
    f"AND status = '{Trade.Status.PLACED}')"
)
