"""What the callback receiver (settings.callbacks) serves: the exchange's reports and the
health check, nothing a customer or a member of staff uses."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from brokerage.health import healthz, process_metrics
from execution.apis import ExchangeCallbackApi

# The exchange's side of the contract: the callback, on its own (the customers' docs leave
# it out).
CALLBACK_SCHEMA = SpectacularAPIView.as_view(
    urlconf="brokerage.callback_urls",
    custom_settings={
        "TITLE": "Brokerage: exchange callbacks",
        "DESCRIPTION": "What the exchange sends when an order is filled or rejected: a "
        "Standard Webhooks signed JSON body.",
        "PREPROCESSING_HOOKS": [],
    },
)

handler400 = "brokerage.errors.json_bad_request"
handler403 = "brokerage.errors.json_forbidden"
handler404 = "brokerage.errors.json_not_found"
handler500 = "brokerage.errors.json_server_error"

urlpatterns = [
    path("exchange/callback/", ExchangeCallbackApi.as_view(), name="exchange-callback"),
    path("exchange/schema/", CALLBACK_SCHEMA, name="exchange-schema"),
    path("healthz", healthz, name="healthz"),
    path("metrics", process_metrics, name="metrics"),
]
