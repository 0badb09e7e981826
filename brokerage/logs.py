"""Log lines: the request id that every line a request causes carries, the plain
`key=value` format and the JSON one for log shippers (LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# What a proxy's X-Request-ID may be for us to adopt it (nginx's $request_id is 32 hex).
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_for(header: str | None, *, trusted: bool) -> str:
    """The id of a request: a trusted proxy's X-Request-ID if it is a sane one, or a new id."""
    if trusted and header and _ACCEPTED_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def set_request_id(value: str | None) -> object:
    """Make `value` the id of everything logged from here on this thread; returns a token
    for reset_request_id."""
    return _request_id.set(value)


def reset_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]


class RequestIdFilter(logging.Filter):
    """Gives every record `request_id` (or None) and `request_suffix` (" request_id=…" inside
    a request, nothing outside one) for the formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _request_id.get()
        record.request_id = current
        record.request_suffix = f" request_id={current}" if current else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id,
    and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
