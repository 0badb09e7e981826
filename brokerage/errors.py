"""One domain exception type, and the one place that turns every API error into JSON.

Every error body is `{"error": <machine-readable code>, "detail": <human text>}`, plus
`"fields": {name: [messages]}` when the request failed validation.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.db import InterfaceError, InternalError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from brokerage.metrics import DATABASE_ERRORS

logger = logging.getLogger(__name__)

# The database went away (a restart, a failover) or gave up on a lock. Usually nothing
# was written, but a connection lost just after a commit loses its answer too: the
# outcome is unknown, and the same request with the same client_order_id is the safe
# retry (it returns the trade if there is one).
DATABASE_RETRY_AFTER_SECONDS = 1
DATABASE_UNAVAILABLE = (
    "The database did not answer, so the outcome is unknown. Retry the same request; an "
    "order retried with the same client_order_id is never placed twice."
)


READ_ONLY_SQL_TRANSACTION = "25006"


class BrokerageError(Exception):
    """A business rule refused the request. `code` is stable; clients may switch on it."""

    status_code: int = status.HTTP_400_BAD_REQUEST

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status_code: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        # More machine-readable fields of the error body (never "error" or "detail").
        self.extra = extra or {}
        if status_code is not None:
            self.status_code = status_code


class Conflict(BrokerageError):
    status_code = status.HTTP_409_CONFLICT


class NotFound(BrokerageError):
    status_code = status.HTTP_404_NOT_FOUND


class RateLimited(BrokerageError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS

    def __init__(self, code: str, detail: str, *, retry_after: int) -> None:
        super().__init__(code, detail)
        self.retry_after = retry_after


_CODES: dict[type[Exception], str] = {
    Http404: "not_found",
    exceptions.ParseError: "malformed_request",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "invalid_request",
}


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def database_unavailable(exc: Exception) -> bool:
    """The database is away, or the session landed on a standby (a URL naming a server
    that a failover demoted): either way, retry soon."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, InternalError) and (
        getattr(exc.__cause__, "sqlstate", None) == READ_ONLY_SQL_TRANSACTION
    )


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, BrokerageError):
        response = Response(
            {**exc.extra, "error": exc.code, "detail": exc.detail}, status=exc.status_code
        )
        if isinstance(exc, RateLimited):
            response["Retry-After"] = str(exc.retry_after)
        return response
    if database_unavailable(exc):
        logger.warning("event=database_unavailable error=%r", exc)
        DATABASE_ERRORS.labels(where="request").inc()
        response = Response(
            {"error": "database_unavailable", "detail": DATABASE_UNAVAILABLE},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response

    drf_response = exception_handler(exc, context)
    if drf_response is None:
        return None
    code = getattr(exc, "error_code", None) or next(
        (name for cls, name in _CODES.items() if isinstance(exc, cls)), "request_refused"
    )
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = _flatten(detail)
            non_field = fields.pop("non_field_errors", None)
            body: dict[str, Any] = {
                "error": code,
                "detail": "; ".join(non_field) if non_field else "Some fields are invalid.",
            }
            if fields:
                body["fields"] = fields
        else:
            body = {"error": code, "detail": "; ".join(_flatten(detail))}
    else:
        body = {"error": code, "detail": str(getattr(exc, "detail", exc))}
    drf_response.data = body
    return drf_response


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """400 that Django raises itself (too many query parameters, a disallowed Host)."""
    return JsonResponse({"error": "bad_request", "detail": "Bad request."}, status=400)


def json_forbidden(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"error": "forbidden", "detail": "Forbidden."}, status=403)


def json_csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    """403 of Django's CSRF check (a form post without its token, a cross-site post)."""
    return JsonResponse(
        {"error": "csrf_failed", "detail": f"CSRF check failed: {reason or 'refused'}."},
        status=403,
    )


def json_login_locked_out(
    request: HttpRequest, response: object = None, credentials: object = None
) -> JsonResponse:
    """django-axes's answer to a login while its user name or client is locked out."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    locked = JsonResponse(
        {
            "error": "login_locked_out",
            "detail": f"Too many failed logins; try again in {seconds} s.",
        },
        status=429,
    )
    locked["Retry-After"] = str(seconds)
    return locked


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """404 for URLs nothing matches: JSON like every other error, not an HTML page."""
    return JsonResponse({"error": "not_found", "detail": "No such URL."}, status=404)


def json_database_unavailable() -> JsonResponse:
    DATABASE_ERRORS.labels(where="request").inc()
    response = JsonResponse(
        {"error": "database_unavailable", "detail": DATABASE_UNAVAILABLE}, status=503
    )
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def json_server_error(request: HttpRequest) -> JsonResponse:
    """What an exception nothing handled becomes (Django calls this while handling it, with
    DEBUG off): one raised in a middleware's own work can be a database outage too."""
    exc = sys.exc_info()[1]
    if isinstance(exc, Exception) and database_unavailable(exc):
        return json_database_unavailable()
    return JsonResponse(
        {"error": "server_error", "detail": "Something went wrong on our side."}, status=500
    )
