"""Thread-safe counters exposed by ``GET /_control/stats``."""

from __future__ import annotations

import threading

COUNTERS = (
    "quotes",
    "quote_batches",
    "orders_received",
    "duplicate_submissions",
    "conflicts",
    "bad_requests",
    "unavailable",
    "fills",
    "rejections",
    "out_of_order",
    "overlapping",
    "callbacks_attempted",
    "callbacks_delivered",
    "callbacks_failed",
    "callbacks_dropped",
    "callbacks_suppressed",
    "callbacks_duplicated",
    "callbacks_abandoned",
    "callbacks_pending",
)


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTERS, 0)

    def incr(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)
