"""The reference list of tradable tickers shipped with the code (trades/data/tickers.csv)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

TICKERS_CSV = Path(__file__).resolve().parent / "data" / "tickers.csv"


def reference_tickers() -> list[tuple[str, str]]:
    with open(TICKERS_CSV, newline="") as f:
        return [(row["symbol"], row["name"]) for row in csv.DictReader(f)]


def load_reference_tickers(ticker_model: Any = None) -> None:
    """Insert the shipped tickers that are missing; never changes or reactivates existing ones."""
    if ticker_model is None:
        from trades.models import Ticker as ticker_model
    ticker_model.objects.bulk_create(
        [ticker_model(symbol=symbol, name=name) for symbol, name in reference_tickers()],
        ignore_conflicts=True,
    )
