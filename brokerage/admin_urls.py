"""What the admin process (settings.admin) serves: the support staff's admin and the health
check. The customer API does not serve the admin."""

from django.contrib import admin
from django.urls import path

from brokerage.health import healthz, process_metrics

handler400 = "brokerage.errors.json_bad_request"
handler403 = "brokerage.errors.json_forbidden"
handler404 = "brokerage.errors.json_not_found"
handler500 = "brokerage.errors.json_server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", process_metrics, name="metrics"),
]
