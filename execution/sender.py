"""The shard relay's handler for trades: for each customer with work, put their next
trade in flight with a quote from the book, and hand the order to the submitter."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal

from django.conf import settings

from execution.exchange_client import ExchangeError, ExchangeUnavailable
from execution.in_flight import QuoteNeeded, order_request_for, trade_put_in_flight
from execution.quotes import QuoteBook
from execution.submitter import Submitter
from outbox.relay import Claim, RestShard, SetAside
from trades.selectors import next_trade_tickers, trades_in_flight_in_shards

logger = logging.getLogger("execution.sender")

# The most orders a leader sends again on taking shards over (see shards_gained).
INHERITED_RESEND_LIMIT = 500
# How long a shard rests when the exchange cannot be reached for a quote.
EXCHANGE_UNREACHABLE_REST_SECONDS = 1.0


class TradeSender:
    def __init__(self, *, name: str, quotes: QuoteBook, submitter: Submitter) -> None:
        self.name = name
        self.quotes = quotes
        self.submitter = submitter

    def shards_gained(self, shards: list[int]) -> None:
        """Send again the latest orders in flight in shards just taken over. The last leader
        may have died between committing a trade in flight and sending it; the reaper would
        only notice past its deadline, and the customer's next trades wait behind it.
        Sending again is harmless: the exchange dedupes by trade id. Only trades younger
        than the reaper's deadline (older ones are the reaper's), and a bounded number:
        this runs between heartbeats, and must not queue a backlog ahead of new orders."""
        trades = trades_in_flight_in_shards(
            shards=shards,
            sent_within=timedelta(seconds=settings.REAPER_IN_FLIGHT_DEADLINE),
            limit=INHERITED_RESEND_LIMIT,
        )
        orders = [order_request_for(trade) for trade in trades]
        for order in orders:
            self.submitter.submit(order)
        if orders:
            logger.info(
                "event=inherited_orders_resent worker=%s shards=%d orders=%d",
                self.name,
                len(shards),
                len(orders),
            )

    def batch_starting(self, shard: int, customer_ids: list[int]) -> None:
        """Try to have the book quote the batch's tickers in one request before its
        transactions; the shard rests if the exchange is unreachable. Any other failure is
        left to each trade's own quote request, so that one bad ticker holds up only its
        own trades. A batch of one asks nothing ahead: its trade's own quote request costs
        the same one request, and a warm book (the usual case) none, with no query for the
        batch's tickers."""
        if len(customer_ids) < 2:
            return
        missing = [
            ticker
            for ticker in sorted(next_trade_tickers(customer_ids=customer_ids))
            if ticker not in self.quotes and not self.quotes.refused_lately(ticker)
        ]
        if not missing:
            return
        try:
            self.quotes.fetch(*missing)
        except ExchangeUnavailable as exc:
            logger.warning("event=quote_failed tickers=%s error=%r", ",".join(missing), exc)
            raise RestShard(EXCHANGE_UNREACHABLE_REST_SECONDS) from exc
        except ExchangeError as exc:
            logger.warning("event=quote_batch_refused tickers=%s error=%r", ",".join(missing), exc)

    def handle(self, claim: Claim) -> None:
        """Put the customer's next trade in flight and submit it. A quote the exchange
        cannot give holds up only this customer, unless the exchange is unreachable
        altogether (then the whole shard rests)."""
        quotes: Mapping[str, Decimal | None] = self.quotes
        for attempt in range(3):
            # Each try may have waited seconds (a row lock, a slow quote): stay the leader
            # in everyone's eyes, and stop if we no longer are.
            if attempt and not claim.still_leading():
                return
            try:
                order = trade_put_in_flight(
                    shard=claim.shard,
                    epoch=claim.epoch,
                    customer_id=claim.customer_id,
                    quotes=quotes,
                )
                break
            except QuoteNeeded as need:
                quotes = self._quote_alone(need)
        else:
            # The next trade changed under us each time (cancelled meanwhile): later.
            raise SetAside(QuoteNeeded("several tickers"))
        if order is not None:
            self.submitter.submit(order)

    def _quote_alone(self, need: QuoteNeeded) -> Mapping[str, Decimal | None]:
        """The exchange's answer for the one ticker, used however old it is by now (see
        QuoteBook.fetch)."""
        if self.quotes.refused_lately(need.ticker):
            raise SetAside(need)
        try:
            return self.quotes.fetch(need.ticker)
        except ExchangeUnavailable as exc:
            logger.warning("event=quote_failed ticker=%s error=%r", need.ticker, exc)
            raise RestShard(EXCHANGE_UNREACHABLE_REST_SECONDS) from exc
        except ExchangeError as exc:
            raise SetAside(exc) from exc

    def turn_ended(self) -> None:
        self.submitter.book_refusals()

    def close(self) -> None:
        self.submitter.close()
