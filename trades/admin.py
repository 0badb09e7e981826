from django.contrib import admin
from django.http import HttpRequest

from brokerage.admin_mixins import ReadOnlyAdmin
from trades.models import Ticker, Trade, TradeEvent


class TradeEventInline(admin.TabularInline):
    """The trade's timeline: each status with when and who, and the exchange's errors."""

    model = TradeEvent
    fields = ("at", "status", "actor", "detail")
    readonly_fields = fields
    ordering = ("id",)
    extra = 0
    can_delete = False
    verbose_name = "event"
    verbose_name_plural = "timeline (status changes, and errors from the exchange)"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    inlines = (TradeEventInline,)
    list_display = (
        "id",
        "customer",
        "seq",
        "ticker",
        "side",
        "quantity",
        "status",
        "fill_price",
        "created_at",
    )
    list_filter = ("status", "side")
    search_fields = (
        "=id",
        "=customer__id",
        "customer__username",
        "=ticker__symbol",
        "=client_order_id",
    )
    list_select_related = ("customer",)
    show_full_result_count = False
    ordering = ("-id",)


@admin.register(Ticker)
class TickerAdmin(admin.ModelAdmin):
    list_display = ("symbol", "name", "active")
    list_filter = ("active",)
    search_fields = ("symbol", "name")
    readonly_fields = ("symbol",)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
