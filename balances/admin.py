from django.contrib import admin

from balances.models import Account, LedgerEntry, Position
from brokerage.admin_mixins import ReadOnlyAdmin


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("customer", "shard", "cash", "cash_held", "last_trade_seq", "created_at")
    search_fields = ("=customer__id", "customer__username")
    list_select_related = ("customer",)
    show_full_result_count = False


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("customer", "ticker", "quantity", "held")
    search_fields = ("=customer__id", "customer__username", "=ticker")
    list_select_related = ("customer",)
    show_full_result_count = False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "customer",
        "trade",
        "kind",
        "ticker",
        "cash_amount",
        "share_quantity",
        "created_at",
    )
    list_filter = ("kind",)
    search_fields = ("=customer__id", "=trade__id", "=ticker")
    list_select_related = ("customer",)
    show_full_result_count = False
    ordering = ("-id",)
