"""The shard worker: leads some shards and sends each of their customers' next trade.

Main loop: keep the shard locks (take free ones, notice lost ones), drain the shards
that were notified or that the poll finds work in, hand orders to a small pool of
threads that submit them to the exchange, then wait for a notification, the poll or
the next lock check, whichever comes first."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection

from outbox.connections import dedicated_connection, session_failed
from outbox.fencing import StaleLeader
from outbox.leadership import ShardLeadership
from outbox.sharding import channel_for_shard
from trades.exchange_client import (
    MAX_TICKERS_PER_QUOTE,
    ExchangeClient,
    ExchangeError,
    ExchangeRejectedRequest,
    ExchangeUnavailable,
    OrderRequest,
    Quote,
)
from trades.execution import (
    QuoteNeeded,
    order_request_for,
    rejected_report,
    trade_send_next,
    trade_settle,
)
from trades.selectors import trades_in_flight_in_shards

logger = logging.getLogger("outbox.worker")

# With the ticker of each customer's next trade (read without locks: only to ask the
# exchange for every quote the batch needs in one request, before the transactions).
# Customers set aside are left out here, so that however many there are, they never fill
# the batch and starve the customers behind them.
_CUSTOMERS_WITH_WORK_SQL = """
SELECT o.customer_id, (
    SELECT t.ticker FROM trades_trade t
    WHERE t.customer_id = o.customer_id AND t.status IN ('placed', 'in_progress')
    ORDER BY t.seq LIMIT 1
) FROM outbox_outboxmessage o WHERE o.shard = %s AND NOT o.customer_id = ANY(%s)
GROUP BY o.customer_id ORDER BY min(o.id) LIMIT %s
"""
CUSTOMER_SET_ASIDE_SECONDS = 5.0


_SHARDS_WITH_WORK_SQL = "SELECT DISTINCT shard FROM outbox_outboxmessage WHERE shard = ANY(%s)"


def exchange_client_factory() -> ExchangeClient:
    return ExchangeClient(
        base_url=settings.EXCHANGE_URL,
        connect_timeout=settings.EXCHANGE_CONNECT_TIMEOUT,
        read_timeout=settings.EXCHANGE_READ_TIMEOUT,
    )


def quote_client_factory() -> ExchangeClient:
    return ExchangeClient(
        base_url=settings.EXCHANGE_URL, connect_timeout=0.5, read_timeout=1.0, retries=0
    )


REFUSED_QUOTE_SECONDS = 5.0
# The most orders a leader sends again on taking shards over (see _resend_inherited_orders).
INHERITED_RESEND_LIMIT = 500


class QuoteBook(Mapping[str, Decimal | None]):
    """Quotes younger than `max_age`, by ticker (None: the exchange does not list it). A
    recent quote is reused: the collar, not the quote's age, is what guarantees a fill
    never costs more than its hold. Quotes are asked for in batches: one request brings
    the missing ticker and every quote of the book past three quarters of its age, so a
    busy leader refreshes its whole book about once per `max_age`, and otherwise asks only
    for tickers it has not seen yet, instead of asking once per trade."""

    def __init__(self, client: ExchangeClient, max_age: float) -> None:
        self.client = client
        self.max_age = max_age
        self._quotes: dict[str, tuple[float, Decimal | None]] = {}
        # Tickers the exchange refused to quote on their own, until when to not ask again.
        self._refused: dict[str, float] = {}

    def __getitem__(self, ticker: str) -> Decimal | None:
        at, price = self._quotes[ticker]
        if at < time.monotonic() - self.max_age:
            raise KeyError(ticker)
        return price

    def __iter__(self) -> Iterator[str]:
        return (ticker for ticker in list(self._quotes) if ticker in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def refused_lately(self, ticker: str) -> bool:
        """Whether the exchange refused to quote `ticker` alone within REFUSED_QUOTE_SECONDS:
        its customers then wait without costing a request each."""
        return self._refused.get(ticker, 0.0) > time.monotonic()

    def fetch(self, *tickers: str) -> dict[str, Decimal | None]:
        """Ask the exchange for `tickers` and the ageing quotes, and return the answer;
        raises ExchangeError. An answer the client refuses (one odd ticker spoils a batch)
        is asked again for `tickers` alone, so that a bad ticker in the book only holds up
        its own trades. Quotes are dated when the answer arrives: one slower than
        `max_age` would otherwise be stale on arrival (the answer itself can always be
        used once, which is what `max_age` 0 means)."""
        ageing = time.monotonic() - self.max_age * 0.75
        asked = list(dict.fromkeys(tickers))
        extra = [
            t
            for t, (at, _) in self._quotes.items()
            if at < ageing and t not in asked and not self.refused_lately(t)
        ]
        try:
            quotes = self._ask((asked + extra)[:MAX_TICKERS_PER_QUOTE])
        except ExchangeUnavailable:
            raise
        except ExchangeError:
            if not extra:
                raise
            quotes = self._ask(asked)
            for ticker in extra:  # one of them spoils a batch: each is asked alone when needed
                self._quotes.pop(ticker, None)
        answered_at = time.monotonic()
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
                self._refused[tickers[0]] = time.monotonic() + REFUSED_QUOTE_SECONDS
            raise


class ShardWorker:
    def __init__(
        self,
        *,
        shards: list[int],
        name: str,
        poll_interval: float,
        lock_retry_interval: float,
        quote_max_age: float,
        lease_timeout: float | None = None,
        submit_threads: int = 8,
        batch_size: int = 100,
        make_exchange_client: Callable[[], ExchangeClient] = exchange_client_factory,
    ) -> None:
        self.shards = sorted(shards)
        self.name = name
        self.poll_interval = poll_interval
        self.lock_retry_interval = lock_retry_interval
        self.batch_size = batch_size
        self.leadership = ShardLeadership(
            shards=self.shards, holder=name, lease_timeout=lease_timeout
        )
        self._next_locks = 0.0
        self._make_client = make_exchange_client
        # Quotes are asked for on the main loop: fail fast rather than outlast the lease.
        self.quotes = QuoteBook(quote_client_factory(), quote_max_age)
        self._submitters = ThreadPoolExecutor(submit_threads, thread_name_prefix="submit")
        self._local = threading.local()
        self._refused: queue.SimpleQueue[tuple[OrderRequest, str]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._listener: psycopg.Connection | None = None
        # Shards whose exchange calls failed: left alone until this monotonic time.
        self._backoff_until: dict[int, float] = {}
        # Customers whose transaction failed on its own (not the session): likewise.
        self._set_aside: dict[int, float] = {}
        # Shards to drain next turn without waiting for a NOTIFY: taken over (perhaps in
        # the middle of a drain), or whose last batch was full.
        self._due: set[int] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        logger.info("event=worker_started worker=%s shards=%d", self.name, len(self.shards))
        next_poll = 0.0
        notified: set[int] = set()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                self._maintain_leadership_if_due()
                to_drain = notified | self._due
                self._due = set()
                if now >= next_poll:
                    to_drain.update(self._shards_with_work())
                    next_poll = now + self.poll_interval
                # One batch per shard per turn: a busy shard never holds up the others.
                for shard in sorted(to_drain):
                    if self._drain(shard):
                        self._due.add(shard)
                self._settle_refused()
                timeout = max(0.0, min(self._next_locks, next_poll) - time.monotonic())
                notified = self._wait_for_notifications(0.0 if self._due else timeout)
        finally:
            self._shutdown()

    def _maintain_leadership_if_due(self) -> None:
        """Check and renew our locks (and heartbeat) every lock_retry_interval, also in the
        middle of a long drain, so that a busy leader is never taken for a frozen one."""
        if time.monotonic() < self._next_locks:
            return
        gained, _ = self.leadership.maintain()
        self._due.update(gained)
        if gained:
            self._resend_inherited_orders(gained)
        self._next_locks = time.monotonic() + self.lock_retry_interval

    def _resend_inherited_orders(self, shards: list[int]) -> None:
        """Send again the latest orders in flight in shards just taken over. The last leader
        may have died between committing a trade in flight and sending it; the reaper would
        only notice past its deadline, and the customer's next trades wait behind it.
        Sending again is harmless: the exchange dedupes by trade id. Only trades younger
        than the reaper's deadline (older ones are the reaper's), and a bounded number:
        this runs between heartbeats, and must not queue a backlog ahead of new orders."""
        try:
            trades = trades_in_flight_in_shards(
                shards=shards,
                sent_within=timedelta(seconds=settings.REAPER_IN_FLIGHT_DEADLINE),
                limit=INHERITED_RESEND_LIMIT,
            )
            orders = [order_request_for(trade) for trade in trades]
        except DatabaseError as exc:
            self._database_trouble(exc)  # the reaper remains the backstop
            return
        for order in orders:
            self._submitters.submit(self._submit, order)
        if orders:
            logger.info(
                "event=inherited_orders_resent worker=%s shards=%d orders=%d",
                self.name,
                len(shards),
                len(orders),
            )

    def _shutdown(self) -> None:
        # The shards go back first: orders still being submitted need no leadership (sending
        # again is idempotent, and the reaper looks after any whose submission fails).
        self.leadership.release_all()
        self._submitters.shutdown(wait=True)
        self._settle_refused()
        if self._listener is not None:
            self._listener.close()
        connection.close()
        logger.info("event=worker_stopped worker=%s", self.name)

    # -- waking up -------------------------------------------------------------------------

    def _wait_for_notifications(self, timeout: float) -> set[int]:
        """Block up to `timeout` for NOTIFYs on our shards' channels; returns the shards."""
        try:
            if self._listener is None or self._listener.closed:
                self._listener = dedicated_connection(f"listener {self.name}")
                for shard in self.shards:
                    self._listener.execute(f'LISTEN "{channel_for_shard(shard)}"')
            shards = set()
            for note in self._listener.notifies(timeout=timeout, stop_after=1):
                shards.add(int(note.channel.rsplit("_", 1)[1]))
            for note in self._listener.notifies(timeout=0):
                shards.add(int(note.channel.rsplit("_", 1)[1]))
            return shards
        except psycopg.Error as exc:
            logger.warning("event=listener_lost worker=%s error=%r", self.name, exc)
            if self._listener is not None:
                self._listener.close()
            self._listener = None
            # Notifications may have been missed while we were away: poll everything held.
            self._stop.wait(min(timeout, self.lock_retry_interval))
            return set(self.leadership.held)

    def _shards_with_work(self) -> set[int]:
        held = sorted(self.leadership.held)
        if not held:
            return set()
        try:
            with connection.cursor() as cursor:
                cursor.execute(_SHARDS_WITH_WORK_SQL, [held])
                return {row[0] for row in cursor.fetchall()}
        except DatabaseError as exc:
            self._database_trouble(exc)
            return set()

    # -- the work --------------------------------------------------------------------------

    def _drain(self, shard: int) -> bool:
        """Send the next trade of each customer in one batch of those with outbox rows in
        `shard`. True if the batch was full, so that more may be waiting: the run loop
        comes back once every other shard has had its turn. Rows added meanwhile bring
        their own NOTIFY (and the poll is the fallback). False as well when the shard is
        lost or the exchange needs a rest."""
        epoch = self.leadership.epoch(shard)
        if self._stop.is_set() or epoch is None:
            return False
        if time.monotonic() < self._backoff_until.get(shard, 0.0):
            return False
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    _CUSTOMERS_WITH_WORK_SQL, [shard, self._customers_aside(), self.batch_size]
                )
                waiting = cursor.fetchall()
            if not waiting:
                return False  # nothing, or only customers set aside: the poll comes back
            self._maintain_leadership_if_due()
            if not self._quote_ahead(shard, {t for _, t in waiting if t is not None}):
                return False
            for customer_id, _ in waiting:
                self._maintain_leadership_if_due()
                if self._stop.is_set() or self.leadership.epoch(shard) != epoch:
                    return False
                try:
                    if not self._send_next(shard, epoch, customer_id):
                        return False
                except Exception as exc:
                    if session_failed(exc):
                        raise
                    self._set_customer_aside(customer_id, exc)
        except DatabaseError as exc:
            self._database_trouble(exc)
            return False
        return len(waiting) == self.batch_size

    def _set_customer_aside(self, customer_id: int, exc: Exception) -> None:
        """One customer's work keeps failing (a bug, bad data): leave them for a while
        rather than hold up every other customer of the shard behind them."""
        logger.error(
            "event=customer_set_aside worker=%s customer=%s seconds=%s error=%r",
            self.name,
            customer_id,
            CUSTOMER_SET_ASIDE_SECONDS,
            exc,
            # The traceback, unless the database or the exchange said what went wrong.
            exc_info=not isinstance(exc, DatabaseError | ExchangeError | QuoteNeeded),
        )
        self._set_aside[customer_id] = time.monotonic() + CUSTOMER_SET_ASIDE_SECONDS

    def _customers_aside(self) -> list[int]:
        """The customers still set aside (forgetting those whose time is up)."""
        now = time.monotonic()
        self._set_aside = {c: until for c, until in self._set_aside.items() if until > now}
        return list(self._set_aside)

    def _quote_ahead(self, shard: int, tickers: set[str]) -> bool:
        """Try to have the book quote `tickers` before the batch's transactions; False (and
        the shard rests) if the exchange is unreachable. Any other failure is left to each
        trade's own quote request, so that one bad ticker holds up only its own trades."""
        missing = [
            ticker
            for ticker in sorted(tickers)
            if ticker not in self.quotes and not self.quotes.refused_lately(ticker)
        ]
        if not missing:
            return True
        try:
            self.quotes.fetch(*missing)
        except ExchangeUnavailable as exc:
            logger.warning("event=quote_failed tickers=%s error=%r", ",".join(missing), exc)
            self._backoff_until[shard] = time.monotonic() + 1.0
            return False
        except ExchangeError as exc:
            logger.warning("event=quote_batch_refused tickers=%s error=%r", ",".join(missing), exc)
        return True

    def _send_next(self, shard: int, epoch: int, customer_id: int) -> bool:
        """Move one customer's next trade; False if the shard should not be drained further.
        A quote the exchange cannot give holds up only this customer, unless the exchange
        is unreachable altogether (then the whole shard rests)."""
        quotes: Mapping[str, Decimal | None] = self.quotes
        for attempt in range(3):
            if attempt:
                # Each try may have waited seconds (a row lock, a slow quote): stay the
                # leader in everyone's eyes, and stop if we no longer are.
                self._maintain_leadership_if_due()
                if self.leadership.epoch(shard) != epoch:
                    return False
            try:
                order = trade_send_next(
                    shard=shard, epoch=epoch, customer_id=customer_id, quotes=quotes
                )
                break
            except QuoteNeeded as need:
                if self.quotes.refused_lately(need.ticker):
                    self._set_customer_aside(customer_id, need)
                    return True
                try:
                    # The answer itself, used however old it is by now (see QuoteBook.fetch).
                    quotes = self.quotes.fetch(need.ticker)
                except ExchangeUnavailable as exc:
                    logger.warning("event=quote_failed ticker=%s error=%r", need.ticker, exc)
                    self._backoff_until[shard] = time.monotonic() + 1.0
                    return False
                except ExchangeError as exc:
                    self._set_customer_aside(customer_id, exc)
                    return True
            except StaleLeader as exc:
                logger.warning("event=stale_leader worker=%s %s", self.name, exc)
                self.leadership.drop(shard)
                return False
        else:
            # The next trade changed under us each time (cancelled meanwhile): later.
            self._set_customer_aside(customer_id, QuoteNeeded("several tickers"))
            return True
        if order is not None:
            self._submitters.submit(self._submit, order)
        return True

    def _client(self) -> ExchangeClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._make_client()
        return client

    def _submit(self, order: OrderRequest) -> None:
        """On a submit thread: send the order. A failure is left to the reaper, which
        finds the trade in flight past its deadline and re-sends it (idempotently). An
        order the exchange refuses is booked rejected only once the exchange confirms it
        never recorded it (a retried submission of a recorded order must not be)."""
        try:
            result = self._client().submit_order(order)
            logger.info(
                "event=order_submitted trade=%s customer=%s exchange_order=%s",
                order.client_order_id,
                order.account_id,
                result.exchange_order_id,
            )
        except ExchangeRejectedRequest as exc:
            self._book_refusal_if_unrecorded(order, f"refused by exchange: {exc.detail}"[:200])
        except ExchangeError as exc:
            logger.warning(
                "event=submit_failed trade=%s customer=%s error=%r",
                order.client_order_id,
                order.account_id,
                exc,
            )
        except Exception:
            logger.exception("event=submit_crashed trade=%s", order.client_order_id)

    def _book_refusal_if_unrecorded(self, order: OrderRequest, reason: str) -> None:
        try:
            known = self._client().get_order(order.client_order_id)
        except ExchangeError as exc:
            logger.warning(
                "event=refusal_unconfirmed trade=%s error=%r", order.client_order_id, exc
            )
            return  # the reaper asks again past the deadline
        if known is not None:
            logger.warning(
                "event=refused_but_recorded trade=%s status=%s", order.client_order_id, known.status
            )
            return  # its callback, or the reaper, settles it from what the exchange says
        self._refused.put((order, reason))

    def _settle_refused(self) -> None:
        while True:
            try:
                order, reason = self._refused.get_nowait()
            except queue.Empty:
                return
            report = rejected_report(
                trade_id=int(order.client_order_id), reason=reason, request=order
            )
            try:
                trade_settle(report=report)
            except DatabaseError as exc:
                self._database_trouble(exc)
                self._refused.put((order, reason))
                return

    def _database_trouble(self, exc: Exception) -> None:
        """Any database error ends this unit of work, never the worker: the session may
        have been ended under us (a restart, the idle-in-transaction timeout after a
        freeze, a deposition), so start again on a new one after a short pause."""
        logger.warning("event=database_error worker=%s error=%r", self.name, exc)
        connection.close()
        self._stop.wait(0.2)
