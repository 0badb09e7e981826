from django.conf import settings
from django.db import models
from django.utils import timezone


class StaffAction(models.Model):
    """One thing a staff member did, with who, when, what and why: written in the same
    transaction as the action itself (staff_actions.services.staff_action_record), so an
    action is on the record exactly when it happened. Append-only: a trigger refuses
    UPDATE and DELETE."""

    class Kind(models.TextChoices):
        MOVEMENT_APPLIED = "movement_applied", "movement applied"
        MOVEMENT_PROPOSED = "movement_proposed", "movement proposed for approval"
        MOVEMENT_APPROVED = "movement_approved", "movement approved"
        MOVEMENT_REJECTED = "movement_rejected", "movement rejected"
        MOVEMENT_EXPIRED = "movement_expired", "movement found expired"
        ACCOUNT_STATUS = "account_status", "account status changed"
        TRADE_CANCELLED = "trade_cancelled", "trade cancelled for the customer"
        TRADE_RESOLVED = "trade_resolved", "stuck trade resolved"
        NOTE = "note", "note"

    id = models.BigAutoField(primary_key=True)
    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="staff_actions"
    )
    kind = models.CharField(max_length=24, choices=Kind.choices)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="staff_actions_on",
    )
    # What it acted on, by id (a trade, a staff movement): kept without foreign keys so
    # that this table depends on no app.
    trade_id = models.BigIntegerField(null=True, blank=True)
    movement_id = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [("write_note", "Can write notes on customers and trades")]
        indexes = [
            models.Index(fields=["customer", "id"], name="staff_action_customer"),
            models.Index(fields=["staff", "id"], name="staff_action_staff"),
            models.Index(
                fields=["trade_id"],
                condition=models.Q(trade_id__isnull=False),
                name="staff_action_trade",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.get_kind_display()} by {self.staff_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"
        )
