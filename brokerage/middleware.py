import json
import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from brokerage.errors import database_unavailable, json_database_unavailable

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
