from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from balances.money import CASH_DIGITS, PRICE_DIGITS

# The longest order id of the exchange's we can store (a longer one is a report we refuse).
EXCHANGE_ORDER_ID_LENGTH = 64


class Ticker(models.Model):
    """A stock customers may trade; anything else is refused before it reaches the exchange."""

    symbol = models.CharField(max_length=10, primary_key=True)
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.symbol


class IllegalTransition(Exception):
    pass


class Trade(models.Model):
    class Side(models.TextChoices):
        BUY = "buy"
        SELL = "sell"

    class Status(models.TextChoices):
        PLACED = "placed"
        IN_PROGRESS = "in_progress"
        FILLED = "filled"
        REJECTED = "rejected"
        CANCELLED = "cancelled"

    # Not yet final; in this order wherever SQL spells them (trades.sql), so that every
    # query's condition matches the partial index's.
    OPEN = (Status.PLACED, Status.IN_PROGRESS)
    # The only moves a trade may make; a trigger in migration 0002 enforces the same table.
    TRANSITIONS: dict[str, frozenset[str]] = {
        Status.PLACED: frozenset({Status.IN_PROGRESS, Status.REJECTED, Status.CANCELLED}),
        Status.IN_PROGRESS: frozenset({Status.FILLED, Status.REJECTED}),
    }

    id = models.BigAutoField(primary_key=True)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="trades"
    )
    # The customer's order: assigned under the customer's account lock, gapless per customer.
    seq = models.BigIntegerField()
    ticker = models.ForeignKey(Ticker, on_delete=models.PROTECT, db_column="ticker")
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.BigIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PLACED)
    reason = models.CharField(max_length=200, null=True, blank=True)
    client_order_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    fill_price = models.DecimalField(**PRICE_DIGITS, null=True, blank=True)
    # When the trade reached its terminal state (filled, rejected or cancelled).
    finished_at = models.DateTimeField(null=True, blank=True)
    exchange_order_id = models.CharField(max_length=EXCHANGE_ORDER_ID_LENGTH, null=True, blank=True)
    # Cash reserved for an in-flight buy (quantity × quote × (1 + collar)), released at settlement.
    cash_held = models.DecimalField(**CASH_DIGITS, null=True, blank=True)
    # The most a buy may fill at (the least a sell may): sent to the exchange as protection.
    limit_price = models.DecimalField(**PRICE_DIGITS, null=True, blank=True)

    class Meta:
        permissions = [
            ("cancel_for_customer", "Can cancel a placed trade for its customer"),
            ("resolve_stuck", "Can resolve a trade stuck in flight from the exchange's record"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["customer", "seq"], name="trade_customer_seq"),
            models.UniqueConstraint(
                fields=["customer", "client_order_id"],
                condition=Q(client_order_id__isnull=False),
                name="trade_customer_client_order_id",
            ),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="trade_quantity_positive"),
            models.CheckConstraint(condition=Q(side__in=["buy", "sell"]), name="trade_side_valid"),
            models.CheckConstraint(
                condition=Q(
                    status__in=["placed", "in_progress", "filled", "rejected", "cancelled"]
                ),
                name="trade_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="filled")
                | Q(fill_price__isnull=False, executed_at__isnull=False),
                name="trade_filled_has_price",
            ),
            # A trade that went out keeps what it went out with: when, its price protection
            # and, for a buy, the cash held for it (what settlement releases).
            models.CheckConstraint(
                condition=~Q(status__in=["in_progress", "filled"])
                | Q(submitted_at__isnull=False, limit_price__isnull=False)
                & (Q(side="sell") | Q(cash_held__isnull=False)),
                name="trade_sent_has_terms",
            ),
        ]
        indexes = [
            # The shard worker's "oldest open trade of this customer".
            models.Index(
                fields=["customer", "seq"],
                condition=Q(status__in=["placed", "in_progress"]),
                name="trade_open_by_customer",
            ),
            # The customer's list filtered by status, newest first.
            models.Index(fields=["customer", "status", "seq"], name="trade_customer_status"),
            # The reaper: placed trades that may have lost their outbox row.
            models.Index(
                fields=["created_at"], condition=Q(status="placed"), name="trade_placed_age"
            ),
            # The reaper: in-flight trades past their deadline.
            models.Index(
                fields=["submitted_at"],
                condition=Q(status="in_progress"),
                name="trade_in_flight_age",
            ),
        ]

    def __str__(self) -> str:
        return f"trade {self.id}: {self.side} {self.quantity} {self.ticker_id} ({self.status})"

    @property
    def updated_at(self) -> datetime:
        """When it last changed: each status stamps its own time (placed: created_at,
        in_progress: submitted_at, final: finished_at), so the latest one set is it."""
        return self.finished_at or self.submitted_at or self.created_at

    @classmethod
    def check_transition(cls, current: str, new: str) -> None:
        if new not in cls.TRANSITIONS.get(current, frozenset()):
            raise IllegalTransition(f"a {current} trade cannot become {new}")

    def transition_to(self, new: str, **fields: object) -> list[str]:
        """Move to `new` (refusing illegal moves) and set `fields`; returns the changed field
        names (trades.services.trade_transition persists them). The caller holds the
        trade's row lock."""
        self.check_transition(self.status, new)
        self.status = new
        for name, value in fields.items():
            setattr(self, name, value)
        return ["status", *fields]


class TradeEvent(models.Model):
    """A trade's timeline after its placement (the trade's created_at): each status it
    moved to (written by a trigger on the trade, in the same transaction, so no change
    escapes it) and each error the exchange gave for it (`status` empty; trades.timeline).
    `actor` is who did it: the database session's application name (web, callbacks,
    `worker NAME` with the shard's epoch, the reaper) or the staff member. Append-only."""

    id = models.BigAutoField(primary_key=True)
    trade = models.ForeignKey(
        Trade, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    status = models.CharField(max_length=12, null=True, blank=True)
    at = models.DateTimeField()
    actor = models.CharField(max_length=100)
    detail = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["trade", "id"], name="trade_event_trade")]

    def __str__(self) -> str:
        return f"trade {self.trade_id} {self.status or 'error'} at {self.at:%Y-%m-%d %H:%M:%S}"
