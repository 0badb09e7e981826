"""Each customer's event log: every change they can see, in the order it happened to them.

Written by triggers (migration 0001) in the transaction that makes the change, so no change
escapes it: a trade's placement and each status it moves to, and each ledger entry (a
fill's cash and shares, a staff deposit, withdrawal, transfer or correction). `seq` counts
1, 2, 3, … per customer with no gap: it is taken while the customer's account row is
locked, and the primary key refuses a second event with the same number, so events
commit in the order of their numbers. Append-only."""

from __future__ import annotations

from django.conf import settings
from django.db import models

TRADE_EVENT_TYPES = {
    "placed": "trade_placed",
    "in_progress": "trade_sent",
    "filled": "trade_filled",
    "rejected": "trade_rejected",
    "cancelled": "trade_cancelled",
}
ACTIVITY_EVENT = "activity"
EVENT_TYPES = (*TRADE_EVENT_TYPES.values(), ACTIVITY_EVENT)


class CustomerEvent(models.Model):
    pk = models.CompositePrimaryKey("customer_id", "seq")
    # No foreign key constraint: every event is written for the customer of a trade or a
    # ledger entry, whose own keys already hold, and checking it again took a share lock
    # on the customer's user row per event.
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    seq = models.BigIntegerField()
    type = models.CharField(max_length=16, choices=[(t, t) for t in EVENT_TYPES])
    # The trade (as GET /api/v1/trades/{id}/ showed it then) or the activity (as GET
    # /api/v1/account/activities/ shows it, with the balance after it).
    data = models.JSONField()
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.type} #{self.seq} (customer {self.customer_id})"
