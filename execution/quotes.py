"""A leader's book of quotes, for the buying-power check and the price protection."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal

from execution.exchange_client import (
    MAX_TICKERS_PER_QUOTE,
    ExchangeClient,
    ExchangeError,
    ExchangeUnavailable,
    Quote,
)

REFUSED_QUOTE_SECONDS = 5.0


class QuoteBook(Mapping[str, Decimal | None]):
    """Quotes younger than `max_age`, by ticker (None: the exchange does not list it). A
    recent quote is reused: the collar, not the quote's age, is what guarantees a fill
    never costs more than its hold. Quotes are asked for in batches: one request brings
    the missing ticker and every quote of the book past three quarters of its age, so a
    busy leader refreshes its whole book about once per `max_age`, and otherwise asks only
    for tickers it has not seen yet, instead of asking once per trade."""

    def __init__(
        self,
        client: ExchangeClient,
        max_age: float,
        *,
        max_per_request: int = MAX_TICKERS_PER_QUOTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.max_age = max_age
        self.max_per_request = max_per_request
        self._clock = clock
        self._quotes: dict[str, tuple[float, Decimal | None]] = {}
        # Tickers the exchange refused to quote on their own, until when to not ask again.
        self._refused: dict[str, float] = {}

    def __getitem__(self, ticker: str) -> Decimal | None:
        at, price = self._quotes[ticker]
        if at < self._clock() - self.max_age:
            raise KeyError(ticker)
        return price

    def __iter__(self) -> Iterator[str]:
        return (ticker for ticker in list(self._quotes) if ticker in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def refused_lately(self, ticker: str) -> bool:
        """Whether the exchange refused to quote `ticker` alone within REFUSED_QUOTE_SECONDS:
        its customers then wait without costing a request each."""
        return self._refused.get(ticker, 0.0) > self._clock()

    def fetch(self, *tickers: str) -> dict[str, Decimal | None]:
        """Ask the exchange for `tickers` and the ageing quotes, and return the answer;
        raises ExchangeError. An answer the client refuses (one odd ticker spoils a batch)
        is asked again for `tickers` alone, so that a bad ticker in the book only holds up
        its own trades. Quotes are dated when the answer arrives: one slower than
        `max_age` would otherwise be stale on arrival (the answer itself can always be
        used once, which is what `max_age` 0 means)."""
        ageing = self._clock() - self.max_age * 0.75
        asked = list(dict.fromkeys(tickers))
        extra = [
            t
            for t, (at, _) in self._quotes.items()
            if at < ageing and t not in asked and not self.refused_lately(t)
        ]
        try:
            quotes = self._ask((asked + extra)[: self.max_per_request])
        except ExchangeUnavailable:
            raise
        except ExchangeError:
            if not extra:
                raise
            quotes = self._ask(asked)
            for ticker in extra:  # one of them spoils a batch: each is asked alone when needed
                self._quotes.pop(ticker, None)
        answered_at = self._clock()
        for symbol in quotes:
            self._refused.pop(symbol, None)
        # None: unlisted; its trades are rejected, and their customers' queues move on.
        prices = {symbol: quote.price if quote else None for symbol, quote in quotes.items()}
        for symbol, price in prices.items():
            self._quotes[symbol] = (answered_at, price)
        return prices

    def _ask(self, tickers: list[str]) -> dict[str, Quote | None]:
        """One request; a ticker the exchange refuses to quote on its own is remembered."""
        try:
            return self.client.quotes(tickers)
        except ExchangeUnavailable:
            raise
        except ExchangeError:
            if len(tickers) == 1:
                self._refused[tickers[0]] = self._clock() + REFUSED_QUOTE_SECONDS
            raise
