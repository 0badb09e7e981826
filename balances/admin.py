from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from balances.models import Account, LedgerEntry, Position
from brokerage.admin_mixins import ReadOnlyAdmin

admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class CustomerLoginAdmin(UserAdmin):
    """Logins are looked at by support staff and changed only by superusers: Django's user
    admin lets whoever may change users set passwords and staff flags, which would let
    staff log in as a customer and trade."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.is_superuser


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
