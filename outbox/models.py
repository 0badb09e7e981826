from django.db import models
from django.utils import timezone


class OutboxMessage(models.Model):
    """ "Customer C in shard S needs attention." Written in the same transaction as the
    change that causes it; deleted by the shard's leader in the transaction that acts on it."""

    id = models.BigAutoField(primary_key=True)
    shard = models.SmallIntegerField()
    customer_id = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["shard", "id"], name="outbox_shard_id"),
            models.Index(fields=["customer_id"], name="outbox_customer"),
        ]

    def __str__(self) -> str:
        return f"customer {self.customer_id} (shard {self.shard})"


class ShardLease(models.Model):
    """Who leads a shard, and the fencing epoch every write of that leader must still match."""

    shard = models.SmallIntegerField(primary_key=True)
    epoch = models.BigIntegerField(default=0)
    holder = models.CharField(max_length=200, blank=True, default="")
    acquired_at = models.DateTimeField(null=True, blank=True)
    # The leader's lock session, and when it last proved it was alive: a standby may end
    # that session when the heartbeat is older than WORKER_LEASE_TIMEOUT.
    holder_pid = models.IntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"shard {self.shard} epoch {self.epoch} held by {self.holder or 'nobody'}"
