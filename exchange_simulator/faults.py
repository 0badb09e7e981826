"""Runtime-tunable behaviour of the simulator: execution knobs and fault switches.

Every field can be set from the command line, the environment, or at runtime through
``POST /_control/faults``. A :class:`FaultConfig` is immutable; updates build a new one, so a
reader always sees a consistent set of values without locking.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class MarketHours:
    """A daily UTC trading window; ``open > close`` means it spans midnight."""

    open: time
    close: time

    def is_open(self, now: datetime) -> bool:
        t = now.astimezone(UTC).time()
        if self.open <= self.close:
            return self.open <= t < self.close
        return t >= self.open or t < self.close

    def __str__(self) -> str:
        return f"{self.open:%H:%M}-{self.close:%H:%M}"


@dataclass(frozen=True)
class OutageWindow:
    """Seconds since server start during which order submission answers 503."""

    start: float
    end: float

    def __str__(self) -> str:
        return f"{_fmt_seconds(self.start)}-{_fmt_seconds(self.end)}"


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def parse_rate(value: Any) -> float:
    """A probability in [0, 1], from a number or a string."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a probability between 0 and 1, got {value!r}")
    try:
        rate = float(value)
    except ValueError:
        raise ValueError(f"expected a probability between 0 and 1, got {value!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"expected a probability between 0 and 1, got {value!r}")
    return rate


def parse_millis(value: Any) -> int:
    """A non-negative whole number of milliseconds, from an int or a string."""
    if isinstance(value, bool):
        raise ValueError(f"expected milliseconds >= 0, got {value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"expected milliseconds >= 0, got {value!r}")
    return value


def parse_fill_delay(value: Any) -> tuple[int, int]:
    """``"MIN,MAX"`` (or ``[min, max]``) milliseconds."""
    parts: list[Any]
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        raise ValueError(f"expected 'MIN,MAX' milliseconds, got {value!r}")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ValueError(f"expected 'MIN,MAX' milliseconds, got {value!r}")
    low, high = parse_millis(parts[0]), parse_millis(parts[1])
    if low > high:
        raise ValueError(f"fill delay minimum {low} is above maximum {high}")
    return low, high


def parse_market_hours(value: Any) -> MarketHours | None:
    """``"HH:MM-HH:MM"`` UTC, or empty/None for always open."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or value.count("-") != 1:
        raise ValueError(f"expected market hours as 'HH:MM-HH:MM', got {value!r}")
    bounds = []
    for part in value.split("-"):
        match = _HHMM.match(part.strip())
        if not match:
            raise ValueError(f"expected market hours as 'HH:MM-HH:MM', got {value!r}")
        bounds.append(time(int(match.group(1)), int(match.group(2))))
    if bounds[0] == bounds[1]:
        raise ValueError(f"market hours open and close are equal: {value!r}")
    return MarketHours(bounds[0], bounds[1])


def parse_outage_windows(value: Any) -> tuple[OutageWindow, ...]:
    """``"START-END,START-END"`` seconds since start (or a list of ``[start, end]`` pairs)."""
    if value is None:
        return ()
    pairs: list[Any]
    if isinstance(value, str):
        pairs = [p.strip().split("-") for p in value.split(",") if p.strip()]
    elif isinstance(value, list | tuple):
        pairs = list(value)
    else:
        raise ValueError(f"expected outage windows as 'START-END,...', got {value!r}")
    windows = []
    for pair in pairs:
        try:
            if isinstance(pair, bool) or len(pair) != 2:
                raise ValueError
            start, end = (float(x) for x in pair)
        except (TypeError, ValueError):
            raise ValueError(f"expected outage windows as 'START-END,...', got {value!r}") from None
        if not 0 <= start < end:
            raise ValueError(f"outage window must have 0 <= start < end, got {pair!r}")
        windows.append(OutageWindow(start, end))
    return tuple(windows)


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


@dataclass(frozen=True)
class FaultConfig:
    fill_delay_ms: tuple[int, int] = (5, 30)
    reject_rate: float = 0.0
    market_hours: MarketHours | None = None
    duplicate_rate: float = 0.0
    callback_delay_ms: int = 0
    reorder_rate: float = 0.0
    lose_first_rate: float = 0.0
    no_callback_rate: float = 0.0
    outage: bool = False
    outage_windows: tuple[OutageWindow, ...] = ()
    slow_ms: int = 0

    def in_outage(self, uptime_seconds: float) -> bool:
        if self.outage:
            return True
        return any(w.start <= uptime_seconds < w.end for w in self.outage_windows)

    def updated(self, changes: Mapping[str, Any]) -> FaultConfig:
        """A copy with ``changes`` applied; raises ValueError on unknown keys or bad values."""
        unknown = sorted(set(changes) - set(_PARSERS))
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(unknown)}")
        parsed: dict[str, Any] = {}
        for key, raw in changes.items():
            try:
                parsed[key] = _PARSERS[key](raw)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return dataclasses.replace(self, **parsed)

    def to_json(self) -> dict[str, Any]:
        return {
            "fill_delay_ms": f"{self.fill_delay_ms[0]},{self.fill_delay_ms[1]}",
            "reject_rate": self.reject_rate,
            "market_hours": str(self.market_hours) if self.market_hours else None,
            "duplicate_rate": self.duplicate_rate,
            "callback_delay_ms": self.callback_delay_ms,
            "reorder_rate": self.reorder_rate,
            "lose_first_rate": self.lose_first_rate,
            "no_callback_rate": self.no_callback_rate,
            "outage": self.outage,
            "outage_windows": ",".join(str(w) for w in self.outage_windows),
            "slow_ms": self.slow_ms,
        }


_PARSERS = {
    "fill_delay_ms": parse_fill_delay,
    "reject_rate": parse_rate,
    "market_hours": parse_market_hours,
    "duplicate_rate": parse_rate,
    "callback_delay_ms": parse_millis,
    "reorder_rate": parse_rate,
    "lose_first_rate": parse_rate,
    "no_callback_rate": parse_rate,
    "outage": parse_bool,
    "outage_windows": parse_outage_windows,
    "slow_ms": parse_millis,
}
