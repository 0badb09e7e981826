from collections.abc import Callable
from typing import Any

from django.urls import URLPattern, include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from balances.apis import AccountApi, ActivitiesApi
from brokerage import customer_login
from brokerage.callback_urls import CALLBACK_SCHEMA
from brokerage.errors import json_not_found
from brokerage.health import healthz
from events.apis import EventListApi
from execution.apis import ExchangeCallbackApi
from execution.metrics import metrics
from outbox.health import readyz
from trades.apis import (
    TickerDetailApi,
    TickerListApi,
    TradeCancelAllApi,
    TradeCancelApi,
    TradeDetailApi,
    TradeListCreateApi,
)


def with_and_without_slash(route: str, view: Callable[..., Any], name: str) -> list[URLPattern]:
    """A client that leaves the trailing slash out must not get a redirect, which it would
    follow as a GET, dropping a POST's order: both forms answer (the slashed one is the
    one links name)."""
    return [path(f"{route}/", view, name=name), path(route, view)]


api_v1 = [
    *with_and_without_slash("trades", TradeListCreateApi.as_view(), "trades"),
    *with_and_without_slash("trades/cancel-all", TradeCancelAllApi.as_view(), "trades-cancel-all"),
    *with_and_without_slash("trades/<int:trade_id>", TradeDetailApi.as_view(), "trade-detail"),
    *with_and_without_slash(
        "trades/<int:trade_id>/cancel", TradeCancelApi.as_view(), "trade-cancel"
    ),
    *with_and_without_slash("account", AccountApi.as_view(), "account"),
    *with_and_without_slash("account/activities", ActivitiesApi.as_view(), "account-activities"),
    *with_and_without_slash("events", EventListApi.as_view(), "events"),
    *with_and_without_slash("tickers", TickerListApi.as_view(), "tickers"),
    *with_and_without_slash("tickers/<str:symbol>", TickerDetailApi.as_view(), "ticker"),
]

handler400 = "brokerage.errors.json_bad_request"
handler403 = "brokerage.errors.json_forbidden"
handler404 = "brokerage.errors.json_not_found"
handler500 = "brokerage.errors.json_server_error"

urlpatterns = [
    path("api/v1/", include(api_v1)),
    # Alpaca's Trading API v2 (docs/alpaca.md), over the same services.
    path("v2/", include("alpaca_compat.urls")),
    # The browsable API's login and logout, for customers who have a password.
    path("api-auth/", include((customer_login.urlpatterns, "rest_framework"))),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("exchange/callback/", ExchangeCallbackApi.as_view(), name="exchange-callback"),
    path("exchange/schema/", CALLBACK_SCHEMA, name="exchange-schema"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    # Anything else: the JSON 404, with DEBUG on too (Django's own 404 page is HTML).
    re_path(r"^", csrf_exempt(json_not_found), name="not-found"),
]
