from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from balances.models import LedgerEntry, Position, StaffMovement
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

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """Without the password (and its "Set password" button) for all but superusers."""
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f != "password"]})
            for name, options in fieldsets
        ]


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
    search_fields = (
        "=customer__id",
        "customer__username",
        "customer__first_name",
        "customer__last_name",
        "=customer__email",
        "=trade__id",
        "=ticker",
    )
    list_select_related = ("customer",)
    show_full_result_count = False
    ordering = ("-id",)


@admin.register(StaffMovement)
class StaffMovementAdmin(ReadOnlyAdmin):
    """Every staff movement; each is made, approved and rejected on its customer's page."""

    list_display = (
        "id",
        "customer",
        "kind",
        "cash_amount",
        "ticker",
        "share_quantity",
        "reverses",
        "status",
        "made_by",
        "decided_by",
        "created_at",
    )
    list_filter = ("status", "kind")
    search_fields = ("=id", "=customer__id", "customer__username", "=idempotency_key")
    list_select_related = ("customer", "made_by", "decided_by")
    show_full_result_count = False
    ordering = ("-id",)
