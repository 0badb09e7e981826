"""Prices: a deterministic start per (seed, ticker) and a per-ticker random walk."""

from __future__ import annotations

import hashlib
import random
import re
import threading
from decimal import ROUND_HALF_EVEN, Decimal

TICKER_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
TICK = Decimal("0.0001")
MIN_START_PRICE = Decimal(5)
MAX_START_PRICE = Decimal(500)
# Each quote or fill moves the price by a whole number of basis points in [-20, +20].
MAX_STEP_BP = 20


def money(value: Decimal) -> str:
    """Serialize a price with exactly four decimal places."""
    return str(value.quantize(TICK, rounding=ROUND_HALF_EVEN))


class SharedRandom:
    """The simulator's single seeded RNG; a lock keeps it usable from every thread."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def random(self) -> float:
        with self._lock:
            return self._random.random()

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._random.uniform(low, high)

    def randint(self, low: int, high: int) -> int:
        with self._lock:
            return self._random.randint(low, high)

    def chance(self, probability: float) -> bool:
        """True with ``probability``; a disabled (0) or certain (1) fault draws nothing."""
        if probability <= 0.0:
            return False
        if probability >= 1.0:
            return True
        return self.random() < probability


def is_listed(ticker: str) -> bool:
    return bool(TICKER_RE.match(ticker))


def start_price(seed: int, ticker: str) -> Decimal:
    """Deterministic in (seed, ticker) and independent of request order, in [5, 500)."""
    digest = hashlib.sha256(f"{seed}:{ticker}".encode()).digest()
    span_ticks = int((MAX_START_PRICE - MIN_START_PRICE) / TICK)
    offset = int.from_bytes(digest[:8], "big") % span_ticks
    return MIN_START_PRICE + offset * TICK


class Market:
    """Current price per ticker. Thread-safe."""

    def __init__(self, seed: int, rng: SharedRandom) -> None:
        self._seed = seed
        self._rng = rng
        self._prices: dict[str, Decimal] = {}
        self._lock = threading.Lock()

    def tick(self, ticker: str) -> Decimal:
        """Advance the walk one step and return the new price (the start price on first use)."""
        with self._lock:
            current = self._prices.get(ticker)
            if current is None:
                price = start_price(self._seed, ticker)
            else:
                step_bp = self._rng.randint(-MAX_STEP_BP, MAX_STEP_BP)
                price = (current * (10_000 + step_bp) / 10_000).quantize(TICK, ROUND_HALF_EVEN)
                price = max(price, TICK)
            self._prices[ticker] = price
            return price
