"""Wake-ups: coalesced NOTIFYs, and the LISTEN that receives them. Shards wake their
leaders; customers wake the stream servers holding their event streams (events.stream).

A transaction that issues NOTIFY takes a cluster-wide lock at commit, so notifying
inside every place-trade transaction would serialise all of them. Instead, after a
commit, the shard or customer is only marked; a background thread sends what is marked,
at most once per `window` seconds per process, on its own connection. A lost wake-up
costs latency, never a trade or an event: the shard worker polls, and the stream server
sweeps its streams."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

import psycopg
from django.conf import settings
from django.db import transaction

from outbox.connections import dedicated_connection
from outbox.sharding import channel_for_shard, shard_of_channel

logger = logging.getLogger(__name__)

# Shards' channels with an empty payload; customers with new events on one channel, their
# ids comma-separated, a few hundred per NOTIFY (a payload must stay under 8000 bytes).
# Both in one statement: one transaction, so one take of the notify lock, per window.
NOTIFY_SQL = "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS n(c, p)"
CUSTOMER_EVENTS_CHANNEL = "customer_events"
_CUSTOMERS_PER_NOTIFY = 400


def _waker_session() -> psycopg.Connection:
    """The waker's session. Its transactions only NOTIFY: none need to wait for the WAL to
    reach the disk (a wake-up lost in a crash costs latency, like any other), and not
    waiting keeps the cluster-wide notify lock, which a NOTIFY holds through its commit,
    short for everyone else's."""
    conn = dedicated_connection("brokerage-waker")
    conn.execute("SET synchronous_commit = off")
    return conn


class Waker:
    """Marks shards and customers after commits and NOTIFYs them from a thread of its own."""

    def __init__(
        self,
        *,
        window: float,
        connect: Callable[[], psycopg.Connection] | None = None,
    ) -> None:
        self.window = window
        self._connect = connect or _waker_session
        self._lock = threading.Lock()
        self._shards: set[int] = set()
        self._customers: set[int] = set()
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._conn: psycopg.Connection | None = None

    def wake(self, shard: int) -> None:
        """Mark `shard` for a NOTIFY soon. Call only after the commit that made the work."""
        with self._lock:
            self._shards.add(shard)
            self._ensure_thread()
        self._wanted.set()

    def wake_customer(self, customer_id: int) -> None:
        """Mark the customer as having new events. Call only after the commit that wrote
        them."""
        with self._lock:
            self._customers.add(customer_id)
            self._ensure_thread()
        self._wanted.set()

    def flush(self) -> None:
        """Send what is pending now, on the calling thread (tests and shutdown)."""
        with self._lock:
            shards, self._shards = self._shards, set()
            customers, self._customers = self._customers, set()
        if shards or customers:
            self._send(shards, customers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _ensure_thread(self) -> None:
        # A forked child (gunicorn worker) inherits the object but not the thread.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._conn = None
        self._thread = threading.Thread(target=self._run, name="waker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            self.flush()
            # Rate limit, not a wait for a condition: wake-ups arriving meanwhile are batched.
            time.sleep(self.window)

    def _send(self, shards: Iterable[int], customers: Iterable[int]) -> None:
        channels = [channel_for_shard(shard) for shard in sorted(shards)]
        payloads = [""] * len(channels)
        ids = sorted(customers)
        for i in range(0, len(ids), _CUSTOMERS_PER_NOTIFY):
            channels.append(CUSTOMER_EVENTS_CHANNEL)
            payloads.append(",".join(map(str, ids[i : i + _CUSTOMERS_PER_NOTIFY])))
        for attempt in range(2):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                self._conn.execute(NOTIFY_SQL, (channels, payloads))
                return
            except psycopg.Error as exc:
                logger.warning("event=notify_failed attempt=%d error=%r", attempt + 1, exc)
                if self._conn is not None:
                    self._conn.close()
                self._conn = None


def customers_of_notification(payload: str) -> list[int]:
    """The customer ids a Waker's NOTIFY on CUSTOMER_EVENTS_CHANNEL carries."""
    return [int(part) for part in payload.split(",") if part.isascii() and part.isdigit()]


_waker: Waker | None = None
_waker_lock = threading.Lock()


def shard_waker() -> Waker:
    """This process's waker (of shards and customers alike)."""
    global _waker
    with _waker_lock:
        if _waker is None:
            _waker = Waker(window=settings.NOTIFY_COALESCE_SECONDS)
        return _waker


def customer_wake_on_commit(customer_id: int) -> None:
    """Once the current transaction commits, tell the stream servers that the customer has
    new events (events.stream). Call it in every transaction that writes their events."""
    transaction.on_commit(lambda: shard_waker().wake_customer(customer_id))


class ShardListener:
    """LISTEN on some shards' channels, on a dedicated session of its own (made on first
    use, and again after one was lost)."""

    def __init__(
        self,
        shards: Iterable[int],
        application_name: str,
        connect: Callable[[], psycopg.Connection] | None = None,
    ) -> None:
        self.shards = sorted(shards)
        self._connect = connect or (lambda: dedicated_connection(application_name))
        self._conn: psycopg.Connection | None = None

    def wait(self, timeout: float) -> set[int]:
        """Block up to `timeout` for NOTIFYs; returns the shards notified. Raises
        psycopg.Error if the session was lost (closed by then: the next wait makes a new
        one, and the caller should assume it missed notifications)."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
                for shard in self.shards:
                    self._conn.execute(f'LISTEN "{channel_for_shard(shard)}"')
            shards = set()
            for note in self._conn.notifies(timeout=timeout, stop_after=1):
                shards.add(shard_of_channel(note.channel))
            for note in self._conn.notifies(timeout=0):
                shards.add(shard_of_channel(note.channel))
            return shards
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
