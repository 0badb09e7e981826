from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from balances.apis import AccountApi
from brokerage.health import healthz
from execution.apis import ExchangeCallbackApi
from execution.metrics import metrics
from outbox.health import readyz
from trades.apis import TradeCancelApi, TradeDetailApi, TradeListCreateApi

api_v1 = [
    path("trades/", TradeListCreateApi.as_view(), name="trades"),
    path("trades/<int:trade_id>/", TradeDetailApi.as_view(), name="trade-detail"),
    path("trades/<int:trade_id>/cancel/", TradeCancelApi.as_view(), name="trade-cancel"),
    path("account/", AccountApi.as_view(), name="account"),
]

handler400 = "brokerage.errors.json_bad_request"
handler403 = "brokerage.errors.json_forbidden"
handler404 = "brokerage.errors.json_not_found"
handler500 = "brokerage.errors.json_server_error"

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("exchange/callback/", ExchangeCallbackApi.as_view(), name="exchange-callback"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]
