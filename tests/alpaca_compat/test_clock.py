"""GET /v2/clock from the exchange's configured hours (EXCHANGE_MARKET_HOURS), or always
open without them; what it answers is a valid Clock of the pinned alpaca-py."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from alpaca.trading.models import Clock
from django.core.exceptions import ImproperlyConfigured

from alpaca_compat.clock import MarketHours, clock, market_hours
from tests.alpaca_compat.test_activities import alpaca

DAY = MarketHours(time(14, 30), time(21, 0))
NIGHT = MarketHours(time(22, 0), time(6, 0))


def at(hh: int, mm: int, day: int = 3) -> datetime:
    return datetime(2026, 12, day, hh, mm, tzinfo=UTC)


@pytest.mark.parametrize(
    ("hours", "now", "is_open", "next_open", "next_close"),
    [
        (DAY, at(9, 0), False, at(14, 30), at(21, 0)),
        (DAY, at(14, 30), True, at(14, 30, 4), at(21, 0)),
        (DAY, at(20, 59), True, at(14, 30, 4), at(21, 0)),
        (DAY, at(21, 0), False, at(14, 30, 4), at(21, 0, 4)),
        (NIGHT, at(23, 0), True, at(22, 0, 4), at(6, 0, 4)),
        (NIGHT, at(3, 0), True, at(22, 0), at(6, 0)),
        (NIGHT, at(12, 0), False, at(22, 0), at(6, 0, 4)),
    ],
)
def test_the_window_opens_and_closes_every_day(hours, now, is_open, next_open, next_close):
    answer = clock(now, hours)
    parsed = Clock(**answer)
    assert (parsed.is_open, parsed.next_open, parsed.next_close) == (
        is_open,
        next_open,
        next_close,
    )
    assert parsed.timestamp == now


def test_without_hours_it_is_always_open():
    assert Clock(**clock(at(3, 0), None)).is_open is True


def test_the_setting(settings):
    settings.EXCHANGE_MARKET_HOURS = " 13:30-20:00 "
    assert market_hours() == MarketHours(time(13, 30), time(20, 0))
    settings.EXCHANGE_MARKET_HOURS = ""
    assert market_hours() is None
    for bad in ("9:30-16:00", "13:30-13:30", "13:30", "24:00-01:00", "13:30-20:00-21:00"):
        settings.EXCHANGE_MARKET_HOURS = bad
        with pytest.raises(ImproperlyConfigured):
            market_hours()


@pytest.mark.django_db
def test_the_api_answers_from_the_setting(customer, settings):
    now = datetime.now(UTC)
    closed_all_day_but_a_minute = f"{(now.hour + 12) % 24:02d}:00-{(now.hour + 12) % 24:02d}:01"
    settings.EXCHANGE_MARKET_HOURS = closed_all_day_but_a_minute
    answer = alpaca(customer).get("/v2/clock").json()
    assert answer["is_open"] is False and Clock(**answer).next_open > now
    settings.EXCHANGE_MARKET_HOURS = ""
    assert alpaca(customer).get("/v2/clock").json()["is_open"] is True
