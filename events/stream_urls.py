from django.urls import path, re_path

from brokerage.errors import json_not_found
from events.stream import event_stream, stream_health, stream_metrics

urlpatterns = [
    path("api/v1/events/stream/", event_stream, name="events-stream"),
    path("api/v1/events/stream", event_stream),
    path("healthz", stream_health, name="healthz"),
    path("metrics", stream_metrics, name="metrics"),
    re_path(r"^", json_not_found, name="not-found"),
]
