"""Alpaca's market clock from the exchange's daily trading window
(settings.EXCHANGE_MARKET_HOURS, "HH:MM-HH:MM" UTC), or always open without one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class MarketHours:
    """Every day from `open` to `close`, UTC; `open > close` spans midnight."""

    open: time
    close: time


def market_hours() -> MarketHours | None:
    text = settings.EXCHANGE_MARKET_HOURS.strip()
    if not text:
        return None
    match = _WINDOW.match(text)
    if match is None:
        raise ImproperlyConfigured(
            f"EXCHANGE_MARKET_HOURS must be 'HH:MM-HH:MM' (UTC) or empty, not {text!r}"
        )
    h1, m1, h2, m2 = map(int, match.groups())
    if (h1, m1) == (h2, m2):
        raise ImproperlyConfigured("EXCHANGE_MARKET_HOURS opens and closes at the same time")
    return MarketHours(time(h1, m1), time(h2, m2))


def _next(at: time, now: datetime) -> datetime:
    """The first moment after `now` whose time of day is `at`."""
    today = datetime.combine(now.date(), at, UTC)
    return today if today > now else today + timedelta(days=1)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def clock(now: datetime, hours: MarketHours | None) -> dict[str, Any]:
    now = now.astimezone(UTC)
    if hours is None:
        return {
            "timestamp": _iso(now),
            "is_open": True,
            "next_open": _iso(now),
            "next_close": _iso(now + timedelta(days=1)),
        }
    next_open, next_close = _next(hours.open, now), _next(hours.close, now)
    return {
        "timestamp": _iso(now),
        # Open when the window's next close comes before its next open.
        "is_open": next_close < next_open,
        "next_open": _iso(next_open),
        "next_close": _iso(next_close),
    }
