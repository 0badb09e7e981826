from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from balances.money import CASH_DIGITS, PRICE_TICK

# An empty bucket last touched long ago: the first request finds it full.
RATE_BUCKET_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class Account(models.Model):
    """A customer's brokerage account: cash, the cash held for in-flight buys, and the
    customer's trade sequence. Its row lock is the customer lock: placing, sending,
    cancelling and settling a customer's trades all take it first. `status` is what staff
    allow (support.accounts): placement honours it in the same statement."""

    class Status(models.TextChoices):
        ACTIVE = "active", "active"
        TRADING_BLOCKED = "trading_blocked", "trading blocked"
        CLOSING_ONLY = "closing_only", "closing only (sells only)"
        CLOSED = "closed", "closed"

    customer = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, primary_key=True, related_name="account"
    )
    shard = models.SmallIntegerField()
    cash = models.DecimalField(**CASH_DIGITS, default=Decimal("0.00"))
    cash_held = models.DecimalField(**CASH_DIGITS, default=Decimal("0.00"))
    last_trade_seq = models.BigIntegerField(default=0)
    # Token bucket for the place-trade rate limit, kept on the row placement locks anyway.
    rate_tokens = models.FloatField(db_default=0.0)
    rate_updated_at = models.DateTimeField(db_default=RATE_BUCKET_EPOCH)
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE, db_default=Status.ACTIVE
    )
    status_reason = models.TextField(blank=True, default="", db_default="")
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("restrict_account", "Can restrict, reopen and close accounts")]
        constraints = [
            models.CheckConstraint(condition=Q(cash__gte=0), name="account_cash_not_negative"),
            models.CheckConstraint(condition=Q(cash_held__gte=0), name="account_held_not_negative"),
            models.CheckConstraint(
                condition=Q(cash_held__lte=F("cash")), name="account_held_covered"
            ),
        ]

    def __str__(self) -> str:
        return f"account of customer {self.customer_id}"

    @property
    def available_cash(self) -> Decimal:
        return self.cash - self.cash_held


class Position(models.Model):
    """Shares of one ticker a customer owns; `held` are reserved by an in-flight sell.

    `cost_basis` is what the shares cost: each buy adds the cash it paid; selling or
    transferring out q of Q shares takes q/Q of it, rounded to the cent (half away from
    zero), so the last share takes what is left and an empty position costs nothing.
    Shares transferred in come at no cost (the ledger has no price for them)."""

    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="positions"
    )
    ticker = models.CharField(max_length=10)
    quantity = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    cost_basis = models.DecimalField(
        **CASH_DIGITS, default=Decimal("0.00"), db_default=Decimal("0.00")
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "ticker"], name="position_one_per_ticker"),
            models.CheckConstraint(
                condition=Q(cost_basis__gte=0), name="position_cost_basis_not_negative"
            ),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="position_not_negative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="position_held_not_negative"),
            models.CheckConstraint(
                condition=Q(held__lte=F("quantity")), name="position_held_covered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} {self.ticker} of customer {self.customer_id}"

    @property
    def avg_entry_price(self) -> Decimal | None:
        """What a share cost on average, to the price tick (half to even); None without
        shares."""
        if not self.quantity:
            return None
        return (self.cost_basis / self.quantity).quantize(PRICE_TICK, rounding=ROUND_HALF_EVEN)


class LedgerEntry(models.Model):
    """One movement of cash (ticker is NULL) or of shares of `ticker`. Append-only: a
    trigger refuses UPDATE and DELETE; a trade can cause each kind of entry at most once."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", "cash deposit"
        WITHDRAWAL = "withdrawal", "cash withdrawal"
        SHARES_IN = "shares_in", "shares transferred in"
        SHARES_OUT = "shares_out", "shares transferred out"
        REVERSAL = "reversal", "reversal of an earlier entry"
        BUY_CASH = "buy_cash", "cash paid for a buy"
        BUY_SHARES = "buy_shares", "shares received from a buy"
        SELL_SHARES = "sell_shares", "shares delivered for a sell"
        SELL_CASH = "sell_cash", "cash received from a sell"

    id = models.BigAutoField(primary_key=True)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    trade = models.ForeignKey(
        "trades.Trade",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger_entries",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    ticker = models.CharField(max_length=10, null=True, blank=True)
    cash_amount = models.DecimalField(**CASH_DIGITS, null=True, blank=True)
    share_quantity = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["customer", "id"], name="ledger_customer_id")]
        constraints = [
            models.UniqueConstraint(
                fields=["trade", "kind"],
                condition=Q(trade__isnull=False),
                name="ledger_one_entry_per_trade_and_kind",
            ),
            models.CheckConstraint(
                condition=(
                    Q(ticker__isnull=True, share_quantity__isnull=True, cash_amount__isnull=False)
                    | Q(
                        ticker__isnull=False, cash_amount__isnull=True, share_quantity__isnull=False
                    )
                ),
                name="ledger_cash_xor_shares",
            ),
        ]

    def __str__(self) -> str:
        what = (
            f"{self.cash_amount} USD"
            if self.ticker is None
            else f"{self.share_quantity} {self.ticker}"
        )
        return f"{self.kind} {what} (customer {self.customer_id}, trade {self.trade_id})"


class StaffMovement(models.Model):
    """A movement of cash or shares made by a staff member (balances.movements): the
    terms, why (`memo`), who and the idempotency key; `entry` is its one ledger entry once
    applied. Above the approval threshold it waits `pending` for a second staff member.
    A trigger refuses to delete a movement, to change its terms, or to change it at all
    once it is decided."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", "cash deposit"
        WITHDRAWAL = "withdrawal", "cash withdrawal"
        SHARES_IN = "shares_in", "shares transferred in"
        SHARES_OUT = "shares_out", "shares transferred out"
        REVERSAL = "reversal", "reversal of a ledger entry"

    class Status(models.TextChoices):
        PENDING = "pending", "waiting for approval"
        APPLIED = "applied", "applied"
        REJECTED = "rejected", "rejected"
        EXPIRED = "expired", "expired unapproved"

    id = models.BigAutoField(primary_key=True)
    idempotency_key = models.CharField(max_length=64, unique=True)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="staff_movements"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    cash_amount = models.DecimalField(**CASH_DIGITS, null=True, blank=True)
    ticker = models.CharField(max_length=10, null=True, blank=True)
    share_quantity = models.BigIntegerField(null=True, blank=True)
    reverses = models.ForeignKey(
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="reversals"
    )
    memo = models.TextField()
    made_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices)
    expires_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True, default="")
    entry = models.OneToOneField(
        LedgerEntry,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="staff_movement",
    )
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [
            ("propose_movement", "Can make or propose movements of cash and shares"),
            ("approve_movement", "Can approve or reject others' movements of cash and shares"),
        ]
        indexes = [
            models.Index(fields=["customer", "id"], name="staff_movement_customer"),
            models.Index(
                fields=["created_at"],
                condition=Q(status="pending"),
                name="staff_movement_pending",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["reverses"],
                condition=Q(status__in=["pending", "applied"]),
                name="staff_movement_reverses_once",
            ),
            models.CheckConstraint(
                condition=Q(status="applied", entry__isnull=False, applied_at__isnull=False)
                | (~Q(status="applied") & Q(entry__isnull=True)),
                name="staff_movement_applied_has_entry",
            ),
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True)
                | ~Q(status="applied")
                | ~Q(decided_by=F("made_by")),
                name="staff_movement_maker_is_not_checker",
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind__in=["deposit", "withdrawal"], cash_amount__gt=0)
                    & Q(ticker__isnull=True, share_quantity__isnull=True, reverses__isnull=True)
                )
                | (
                    Q(kind__in=["shares_in", "shares_out"], share_quantity__gt=0)
                    & Q(ticker__isnull=False, cash_amount__isnull=True, reverses__isnull=True)
                )
                | Q(
                    kind="reversal",
                    reverses__isnull=False,
                    cash_amount__isnull=True,
                    ticker__isnull=True,
                    share_quantity__isnull=True,
                ),
                name="staff_movement_terms_of_its_kind",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.get_kind_display()} #{self.id} for customer {self.customer_id} ({self.status})"
        )
