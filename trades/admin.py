from django.contrib import admin
from django.http import HttpRequest

from brokerage.admin_mixins import ReadOnlyAdmin
from trades.models import Ticker, Trade


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
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
