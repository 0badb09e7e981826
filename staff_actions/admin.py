from django.contrib import admin

from brokerage.admin_mixins import ReadOnlyAdmin
from staff_actions.models import StaffAction


@admin.register(StaffAction)
class StaffActionAdmin(ReadOnlyAdmin):
    """What staff did, who, when and why: browsable, never editable."""

    list_display = ("id", "created_at", "staff", "kind", "customer", "trade_id", "reason")
    list_filter = ("kind",)
    search_fields = (
        "=customer__id",
        "customer__username",
        "staff__username",
        "=trade_id",
        "=movement_id",
    )
    list_select_related = ("staff", "customer")
    show_full_result_count = False
    ordering = ("-id",)
