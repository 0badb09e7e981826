"""What the stream server (settings.stream) serves: the customers' event streams, its
health and its metrics."""

from django.urls import path, re_path

from brokerage.errors import json_not_found
from events.stream import event_stream, stream_health, stream_metrics

handler400 = "brokerage.errors.json_bad_request"
handler403 = "brokerage.errors.json_forbidden"
handler404 = "brokerage.errors.json_not_found"
handler500 = "brokerage.errors.json_server_error"

urlpatterns = [
    path("api/v1/events/stream/", event_stream, name="events-stream"),
    path("api/v1/events/stream", event_stream),
    path("healthz", stream_health, name="healthz"),
    path("metrics", stream_metrics, name="metrics"),
    re_path(r"^", json_not_found, name="not-found"),
]
