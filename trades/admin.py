from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from brokerage.admin_mixins import ReadOnlyAdmin
from trades.models import Ticker, Trade, TradeEvent

TIMELINE_ROW = "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    readonly_fields = ("timeline",)

    @admin.display(description="timeline (status changes, and errors from the exchange)")
    def timeline(self, trade: Trade) -> str:
        rows = [(trade.created_at, "placed", f"customer {trade.customer_id}", "")]
        rows += [
            (event.at, event.status or "error", event.actor, event.detail)
            for event in TradeEvent.objects.filter(trade=trade).order_by("id")
        ]
        body = format_html_join(
            "", TIMELINE_ROW, ((f"{at:%Y-%m-%d %H:%M:%S} UTC", *rest) for at, *rest in rows)
        )
        return format_html(
            "<table><tr><th>when</th><th>status</th><th>who</th><th>detail</th></tr>{}</table>",
            body,
        )

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
