"""What the callback receiver (settings.callbacks) serves: the exchange's reports and the
health check, nothing a customer or a member of staff uses."""

from django.urls import path

from brokerage.health import healthz, process_metrics
from execution.apis import ExchangeCallbackApi

handler400 = "brokerage.errors.json_bad_request"
handler403 = "brokerage.errors.json_forbidden"
handler404 = "brokerage.errors.json_not_found"
handler500 = "brokerage.errors.json_server_error"

urlpatterns = [
    path("exchange/callback/", ExchangeCallbackApi.as_view(), name="exchange-callback"),
    path("healthz", healthz, name="healthz"),
    path("metrics", process_metrics, name="metrics"),
]
