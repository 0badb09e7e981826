"""Small statistics helpers (timings are floats; money never passes through here)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> float | None:
    """Seconds as milliseconds rounded for the report (None for NaN)."""
    return None if math.isnan(seconds) else round(seconds * 1000, 1)
