import json
import logging
import time
from collections.abc import Callable
from urllib.parse import quote

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from brokerage.errors import database_unavailable, json_database_unavailable
from brokerage.logs import request_id_for, reset_request_id, set_request_id
from brokerage.metrics import HTTP_METHODS, HTTP_REQUEST_SECONDS, HTTP_REQUESTS

logger = logging.getLogger(__name__)


class RequestBodyLimitMiddleware:
    """Refuse bodies over DATA_UPLOAD_MAX_MEMORY_SIZE before anything reads them.

    DRF's parsers read the raw stream and so bypass Django's own size check."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if length > limit or chunked:
            body = {
                "error": "request_too_large",
                "detail": f"Request bodies are limited to {limit} bytes with a Content-Length.",
            }
            return HttpResponse(json.dumps(body), status=413, content_type="application/json")
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """A view outside DRF (the admin's pages and login) that finds the database away, or on
    a standby, answers 503 database_unavailable to retry, as the API does, not a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_unavailable(exception):
            return None
        logger.warning("event=database_unavailable path=%s error=%r", request.path, exception)
        return json_database_unavailable()


access_log = logging.getLogger("brokerage.access")


class RequestIdMiddleware:
    """Gives each request an id (a trusted proxy's X-Request-ID, else a new one) that every
    log line it causes carries and the response returns, logs one access line and counts
    the request in brokerage_http_requests_total and _duration_seconds."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.trust_proxy = settings.REST_FRAMEWORK.get("NUM_PROXIES", 0) > 0

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request.META.get("HTTP_X_REQUEST_ID"), trusted=self.trust_proxy)
        token = set_request_id(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            elapsed = time.perf_counter() - started
            access_log.info(
                "event=request method=%s path=%s status=%d duration_ms=%.1f",
                request.method,
                # Percent-encoded again: a decoded newline would forge a log line.
                quote(request.path, safe="/:@!$&'()*+,;-._~"),
                response.status_code,
                elapsed * 1000,
            )
            match = request.resolver_match
            view = (match.view_name or "unnamed") if match else "unmatched"
            method = request.method if request.method in HTTP_METHODS else "other"
            HTTP_REQUESTS.labels(view, method, response.status_code).inc()
            HTTP_REQUEST_SECONDS.labels(view, method).observe(elapsed)
            return response
        finally:
            reset_request_id(token)
