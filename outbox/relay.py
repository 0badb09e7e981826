"""The relay: leads some shards and hands each of their customers with work to a handler.

Main loop: keep the shard locks (take free ones, notice lost ones), drain the shards that
were notified or that the poll finds work in, one batch per shard per turn, then wait for
a notification, the poll or the next lock check, whichever comes first.

The relay knows timing, not the work: a handler does that, one customer at a time, and
says with the exceptions it raises when a customer (SetAside) or a whole shard
(RestShard) has to wait, or that this process no longer leads the shard (StaleLeader)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import psycopg
from django.db import DatabaseError, connection

from brokerage.metrics import DATABASE_ERRORS
from outbox.connections import ServerIsStandby, session_failed
from outbox.fencing import StaleLeader
from outbox.leadership import ShardLeadership
from outbox.notify import ShardListener

logger = logging.getLogger("outbox.relay")

# Customers set aside are left out here, so that however many there are, they never fill
# the batch and starve the customers behind them.
_CUSTOMERS_WITH_WORK_SQL = """
SELECT customer_id FROM outbox_outboxmessage WHERE shard = %s AND NOT customer_id = ANY(%s)
GROUP BY customer_id ORDER BY min(id) LIMIT %s
"""
_SHARDS_WITH_WORK_SQL = "SELECT DISTINCT shard FROM outbox_outboxmessage WHERE shard = ANY(%s)"

CUSTOMER_SET_ASIDE_SECONDS = 5.0
LISTEN_RETRY_SECONDS = 1.0


class SetAside(Exception):
    """The customer's work cannot go on now (the reason is known, so no traceback is
    logged): leave them for CUSTOMER_SET_ASIDE_SECONDS, and go on with the others."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(cause)
        self.cause = cause


class RestShard(Exception):
    """No work in the shard can go on now (the exchange is unreachable, say): leave the
    shard alone for `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


@dataclass(frozen=True)
class Claim:
    """A customer with work in a shard this process leads, and the epoch that every write
    for it must be fenced with (outbox.fencing)."""

    shard: int
    epoch: int
    customer_id: int
    # Renews the heartbeat if it is due (a handler that waited seconds calls it) and says
    # whether the shard is still led with this epoch.
    still_leading: Callable[[], bool]


class Handler(Protocol):
    """The work the relay hands out. Any method may raise DatabaseError: the relay ends the
    unit of work and starts again on a new session."""

    def shards_gained(self, shards: list[int]) -> None:
        """This process just took these shards over (their last leader may have died in
        the middle of something)."""

    def batch_starting(self, shard: int, customer_ids: list[int]) -> None:
        """These customers are about to be handled one by one (a chance to prepare for all
        of them at once); may raise RestShard."""

    def handle(self, claim: Claim) -> None:
        """Do the customer's work; may raise SetAside, RestShard or StaleLeader."""

    def turn_ended(self) -> None:
        """Every due shard had its batch: finish what was left for the main thread."""

    def close(self) -> None:
        """The relay stops: finish or hand back what is under way."""


class Leadership(Protocol):
    """What the relay needs of outbox.leadership.ShardLeadership."""

    @property
    def held(self) -> Mapping[int, int]: ...

    def epoch(self, shard: int) -> int | None: ...

    def maintain(self) -> tuple[list[int], list[int]]: ...

    def drop(self, shard: int) -> None: ...

    def release_all(self) -> None: ...


class ShardRelay:
    def __init__(
        self,
        *,
        shards: list[int],
        name: str,
        handler: Handler,
        poll_interval: float,
        lock_retry_interval: float,
        lease_timeout: float | None = None,
        batch_size: int = 100,
        leadership: Leadership | None = None,
        listener: ShardListener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shards = sorted(shards)
        self.name = name
        self.handler = handler
        self.poll_interval = poll_interval
        self.lock_retry_interval = lock_retry_interval
        self.batch_size = batch_size
        self.leadership: Leadership = leadership or ShardLeadership(
            shards=self.shards, holder=name, lease_timeout=lease_timeout
        )
        self.listener = listener or ShardListener(self.shards, f"listener {name}")
        self._clock = clock
        self._next_locks = 0.0
        self._listen_again_at = 0.0
        self._stop = threading.Event()
        # Shards whose handler asked for a rest: left alone until this time.
        self._rest_until: dict[int, float] = {}
        # Customers whose work failed on its own (not the session's): likewise.
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
                now = self._clock()
                poll = now >= next_poll
                if poll:
                    next_poll = now + self.poll_interval
                self.turn(notified, poll=poll)
                timeout = max(0.0, min(self._next_locks, next_poll) - self._clock())
                notified = self._wait_for_notifications(0.0 if self._due else timeout)
        finally:
            self._shutdown()

    def turn(self, notified: Iterable[int] = (), *, poll: bool = False) -> None:
        """One turn of the loop: check the locks if due, then one batch of each shard that
        was notified, is due (taken over, or its last batch was full) or, with `poll`, has
        outbox rows. A busy shard never holds up the others."""
        self._maintain_leadership_if_due()
        to_drain = set(notified) | self._due
        self._due = set()
        if poll:
            to_drain.update(self._shards_with_work())
        for shard in sorted(to_drain):
            if self._drain(shard):
                self._due.add(shard)
        self._call_handler(self.handler.turn_ended)

    def customers_set_aside(self) -> list[int]:
        """The customers still set aside (forgetting those whose time is up)."""
        now = self._clock()
        self._set_aside = {c: until for c, until in self._set_aside.items() if until > now}
        return list(self._set_aside)

    def _maintain_leadership_if_due(self) -> None:
        """Check and renew our locks (and heartbeat) every lock_retry_interval, also in the
        middle of a long drain, so that a busy leader is never taken for a frozen one."""
        if self._clock() < self._next_locks:
            return
        gained, _ = self.leadership.maintain()
        self._due.update(gained)
        self._next_locks = self._clock() + self.lock_retry_interval
        if gained:
            self._call_handler(self.handler.shards_gained, gained)

    def _call_handler(self, hook: Callable[..., None], *args: object) -> None:
        """A handler hook outside any customer's work: no error of it ends the relay (a
        database error starts again on a new session; anything else is logged)."""
        try:
            hook(*args)
        except DatabaseError as exc:
            self._database_trouble(exc)
        except Exception:
            logger.exception("event=handler_failed worker=%s hook=%s", self.name, hook.__name__)

    def _still_leading(self, shard: int, epoch: int) -> bool:
        self._maintain_leadership_if_due()
        return self.leadership.epoch(shard) == epoch

    def _shutdown(self) -> None:
        # The shards go back first: work still under way needs no leadership (the handler
        # is fenced, and whatever it leaves undone is the reaper's).
        self.leadership.release_all()
        try:
            self.handler.close()
        except Exception:
            logger.exception("event=handler_failed worker=%s hook=close", self.name)
        finally:
            self.listener.close()
            connection.close()
        logger.info("event=worker_stopped worker=%s", self.name)

    # -- waking up -------------------------------------------------------------------------

    def _wait_for_notifications(self, timeout: float) -> set[int]:
        """Block up to `timeout` for NOTIFYs on our shards' channels; returns the shards.
        Without a listening session (lost, or its server a standby), every shard held
        counts as notified, and a new session is tried LISTEN_RETRY_SECONDS later."""
        if self._clock() < self._listen_again_at:
            self._stop.wait(timeout)
            return set(self.leadership.held)
        try:
            return self.listener.wait(timeout)
        except psycopg.Error as exc:
            if not isinstance(exc, ServerIsStandby):  # logged where it was raised
                logger.warning("event=listener_lost worker=%s error=%r", self.name, exc)
            self._listen_again_at = self._clock() + LISTEN_RETRY_SECONDS
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

    # -- handing out the work --------------------------------------------------------------

    def _drain(self, shard: int) -> bool:
        """Hand each customer of one batch of those with outbox rows in `shard` to the
        handler. True if the batch was full, so that more may be waiting: the run loop
        comes back once every other shard has had its turn. Rows added meanwhile bring
        their own NOTIFY (and the poll is the fallback). False as well when the shard is
        lost or resting."""
        epoch = self.leadership.epoch(shard)
        if self._stop.is_set() or epoch is None:
            return False
        if self._clock() < self._rest_until.get(shard, 0.0):
            return False
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    _CUSTOMERS_WITH_WORK_SQL, [shard, self.customers_set_aside(), self.batch_size]
                )
                waiting = [row[0] for row in cursor.fetchall()]
            if not waiting:
                return False  # nothing, or only customers set aside: the poll comes back
            self._maintain_leadership_if_due()
            try:
                self.handler.batch_starting(shard, waiting)
            except RestShard as rest:
                self._rest(shard, rest)
                return False
            for customer_id in waiting:
                self._maintain_leadership_if_due()
                if self._stop.is_set() or self.leadership.epoch(shard) != epoch:
                    return False
                if not self._hand_over(shard, epoch, customer_id):
                    return False
        except DatabaseError as exc:
            self._database_trouble(exc)
            return False
        return len(waiting) == self.batch_size

    def _hand_over(self, shard: int, epoch: int, customer_id: int) -> bool:
        """The handler does one customer's work; False if the shard should not be drained
        further. An error of the session's ends the batch (raised on); any other error
        holds up only this customer."""
        claim = Claim(
            shard=shard,
            epoch=epoch,
            customer_id=customer_id,
            still_leading=lambda: self._still_leading(shard, epoch),
        )
        try:
            self.handler.handle(claim)
        except StaleLeader as exc:
            logger.warning("event=stale_leader worker=%s %s", self.name, exc)
            self.leadership.drop(shard)
            return False
        except RestShard as rest:
            self._rest(shard, rest)
            return False
        except SetAside as aside:
            self._set_customer_aside(customer_id, aside.cause, traceback=False)
        except Exception as exc:
            if session_failed(exc):
                raise
            # The traceback, unless the database said what went wrong.
            self._set_customer_aside(customer_id, exc, traceback=not isinstance(exc, DatabaseError))
        return True

    def _rest(self, shard: int, rest: RestShard) -> None:
        self._rest_until[shard] = self._clock() + rest.seconds

    def _set_customer_aside(
        self, customer_id: int, cause: BaseException, *, traceback: bool
    ) -> None:
        """One customer's work keeps failing (a bug, bad data): leave them for a while
        rather than hold up every other customer of the shard behind them."""
        logger.error(
            "event=customer_set_aside worker=%s customer=%s seconds=%s error=%r",
            self.name,
            customer_id,
            CUSTOMER_SET_ASIDE_SECONDS,
            cause,
            exc_info=cause if traceback else None,
        )
        self._set_aside[customer_id] = self._clock() + CUSTOMER_SET_ASIDE_SECONDS

    def _database_trouble(self, exc: Exception) -> None:
        """Any database error ends this unit of work, never the relay: the session may
        have been ended under us (a restart, the idle-in-transaction timeout after a
        freeze, a deposition), so start again on a new one after a short pause."""
        logger.warning("event=database_error worker=%s error=%r", self.name, exc)
        DATABASE_ERRORS.labels(where="worker").inc()
        connection.close()
        self._stop.wait(0.2)
