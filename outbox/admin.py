from django.contrib import admin

from brokerage.admin_mixins import ReadOnlyAdmin
from outbox.models import OutboxMessage, ShardLease


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "shard", "customer_id", "created_at")
    list_filter = ("shard",)
    search_fields = ("=customer_id",)
    show_full_result_count = False


@admin.register(ShardLease)
class ShardLeaseAdmin(ReadOnlyAdmin):
    list_display = ("shard", "epoch", "holder", "acquired_at")
