"""Shard leadership: Postgres session advisory locks on one dedicated connection, a
fencing epoch bumped on every takeover (see outbox.fencing), and a heartbeat so that a
frozen leader can be deposed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import psycopg

from brokerage.metrics import DATABASE_ERRORS
from outbox.connections import ServerIsStandby, dedicated_connection

logger = logging.getLogger("outbox.leadership")

# The first key of the two-int advisory lock form; the second is the shard number.
SHARD_LOCK_NAMESPACE = 0x5B0C
REAPER_LOCK_NAMESPACE = 0x5B0D

_TRY_LOCKS_SQL = "SELECT s FROM unnest(%s::int[]) AS s WHERE pg_try_advisory_lock(%s, s) ORDER BY s"
_HELD_LOCKS_SQL = """
SELECT objid::int FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND classid = %s AND objsubid = 2
  AND granted
"""
_TAKE_EPOCH_SQL = """
INSERT INTO outbox_shardlease (shard, epoch, holder, acquired_at, holder_pid, heartbeat_at)
VALUES (%s, 1, %s, now(), pg_backend_pid(), now())
ON CONFLICT (shard) DO UPDATE
SET epoch = outbox_shardlease.epoch + 1, holder = EXCLUDED.holder, acquired_at = now(),
    holder_pid = EXCLUDED.holder_pid, heartbeat_at = now()
RETURNING epoch
"""
_HEARTBEAT_SQL = """
UPDATE outbox_shardlease SET heartbeat_at = now()
WHERE shard = ANY(%s) AND holder_pid = pg_backend_pid()
"""
# Leaders of shards we want whose heartbeat stopped: their lock sessions are ended, which
# releases their locks. Their processes, if they ever resume, are fenced by the epoch.
# Its work session goes too: a leader frozen inside a transaction holds row locks (its
# customers' accounts, the lease row it fenced with) until that session ends.
_DEPOSE_FROZEN_SQL = """
WITH frozen AS (
    SELECT shard, holder, holder_pid FROM outbox_shardlease
    WHERE shard = ANY(%s) AND heartbeat_at < now() - make_interval(secs => %s)
      AND holder_pid IS NOT NULL AND holder_pid <> pg_backend_pid()
      AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = holder_pid)
)
SELECT frozen.shard, frozen.holder, pg_terminate_backend(a.pid)
FROM frozen JOIN pg_stat_activity a
  ON a.datname = current_database()
  AND ((a.pid = frozen.holder_pid AND a.application_name = left('leader ' || frozen.holder, 63))
       OR a.application_name = left('worker ' || frozen.holder, 63))
"""
# Without lease rows (the reaper), the holder's lock session is its heartbeat: a holder
# checks its lock on that session every second (SingleActiveLock), so one idle for longer
# than the timeout belongs to a frozen process. Ending it releases the lock.
_DEPOSE_IDLE_HOLDERS_SQL = """
SELECT l.objid::int, a.application_name, pg_terminate_backend(a.pid)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objsubid = 2 AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.objid::int = ANY(%s) AND l.pid <> pg_backend_pid()
  AND a.state = 'idle' AND a.state_change < now() - make_interval(secs => %s)
"""
# A shard whose lock we now hold but whose lease row an old leader's transaction still
# locks: that leader no longer leads, so its transaction, if it sits idle (its process
# frozen), is ended; one that is running will finish by itself. The session is the one
# whose transaction locks the row (the row's xmax), and must bear the old leader's name.
# A row share-locked by several transactions (xmax is then a MultiXact) or from inside a
# savepoint matches nobody: Postgres's idle-in-transaction timeout ends it instead.
_END_IDLE_OLD_LEADER_SQL = """
SELECT l.holder, pg_terminate_backend(a.pid)
FROM outbox_shardlease l JOIN pg_stat_activity a
  ON a.backend_xid = l.xmax AND a.datname = current_database()
  AND a.application_name = left('worker ' || l.holder, 63)
WHERE l.shard = %s AND l.holder <> %s
  AND a.state IN ('idle in transaction', 'idle in transaction (aborted)')
  AND a.state_change < now() - make_interval(secs => %s)
"""
# How long an old leader's transaction may sit idle on a lease row before it is ended.
OLD_LEADER_IDLE_SECONDS = 0.2


def shard_ranges(shards: list[int]) -> str:
    """0-3,7 for [0, 1, 2, 3, 7] (sorted input)."""
    parts: list[str] = []
    start = previous = None
    for shard in shards:
        if start is not None and previous is not None and shard == previous + 1:
            previous = shard
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = shard
    if start is not None:
        parts.append(str(start) if start == previous else f"{start}-{previous}")
    return ",".join(parts)


class ShardLeadership:
    """The shards this process leads, and the epoch it took each one with.

    Locks live on one session; if that session dies (the process is fine but the
    connection was killed, Postgres restarted...), every lock is gone with it, so every
    shard is dropped at once and re-contested on a new session. Locks are only ever
    tried for shards not held: session locks stack, and a stacked lock would survive
    one unlock.

    After losing its session (or reaching a Postgres hot standby, not the primary), a
    process waits `rejoin_after` seconds before connecting and contesting locks again, so
    that healthy standbys win.

    With `lease_timeout`, a leader writes a heartbeat at every `maintain()`, and a
    standby ends the lock session of a leader whose heartbeat is older than the timeout
    (a frozen process keeps its session, and so its locks, alive). Without leases (the
    reaper), no lease row is written and no epoch kept: the lock session's own activity
    at every `maintain()` is the heartbeat."""

    def __init__(
        self,
        *,
        shards: Iterable[int],
        holder: str,
        namespace: int = SHARD_LOCK_NAMESPACE,
        lease_timeout: float | None = None,
        leases: bool = True,
        rejoin_after: float = 1.0,
        connect: Callable[[], psycopg.Connection] | None = None,
    ) -> None:
        self.wanted = sorted(set(shards))
        self.holder = holder
        self.namespace = namespace
        self.lease_timeout = lease_timeout
        self.leases = leases
        self._connect = connect or (
            lambda: dedicated_connection(f"leader {holder}", lock_timeout="250ms")
        )
        self.rejoin_after = rejoin_after
        self._conn: psycopg.Connection | None = None
        self._contest_after = 0.0
        self.held: dict[int, int] = {}
        # When maintain() last reached the lock session (time.monotonic()).
        self.last_maintained = time.monotonic()

    def epoch(self, shard: int) -> int | None:
        return self.held.get(shard)

    def maintain(self) -> tuple[list[int], list[int]]:
        """Check the locks we hold still exist, prove we are alive, depose frozen leaders
        of shards we want, and try to take the free ones. Returns (gained, lost)."""
        lost: list[int] = []
        try:
            if self._conn is None or self._conn.closed:
                if not self.held and time.monotonic() < self._contest_after:
                    return [], []  # a new session would have nothing to do yet
                self._conn = self._connect()
            if self.held:
                rows = self._conn.execute(_HELD_LOCKS_SQL, (self.namespace,)).fetchall()
                still = {row[0] for row in rows}
                lost = [shard for shard in self.held if shard not in still]
                for shard in lost:
                    del self.held[shard]
                if self.leases and self.held:
                    self._heartbeat()
            candidates = [s for s in self.wanted if s not in self.held]
            if time.monotonic() < self._contest_after:
                candidates = []
            gained = self._try_take(candidates)
            if self.lease_timeout and len(gained) < len(candidates):
                self._depose_frozen([s for s in candidates if s not in self.held])
        except psycopg.Error as exc:
            if not isinstance(exc, ServerIsStandby):  # logged where it was raised
                logger.warning("event=lock_session_lost holder=%s error=%r", self.holder, exc)
            DATABASE_ERRORS.labels(where="lock_session").inc()
            lost += list(self.held)
            self.held.clear()
            self._close()
            # A process whose session was killed may be the problem: let the standbys,
            # which try every lock interval, take over first.
            self._contest_after = time.monotonic() + self.rejoin_after
            return [], sorted(lost)
        self.last_maintained = time.monotonic()
        for shard in lost:
            logger.warning("event=leadership_lost shard=%s holder=%s", shard, self.holder)
        return gained, sorted(lost)

    def _heartbeat(self) -> None:
        assert self._conn is not None
        try:
            self._conn.execute(_HEARTBEAT_SQL, (sorted(self.held),))
        except psycopg.errors.LockNotAvailable:
            # A deposed leader's transaction still share-locks a lease row; the next
            # beat will get through, long before any lease timeout.
            logger.info("event=heartbeat_deferred holder=%s", self.holder)

    def _try_take(self, candidates: list[int]) -> list[int]:
        if not candidates:
            return []
        assert self._conn is not None
        rows = self._conn.execute(_TRY_LOCKS_SQL, (candidates, self.namespace)).fetchall()
        gained = []
        for (shard,) in rows:
            epoch = 0
            if self.leases:
                try:
                    row = self._conn.execute(_TAKE_EPOCH_SQL, (shard, self.holder)).fetchone()
                    assert row is not None  # an upsert RETURNING always has its row
                    (epoch,) = row
                except psycopg.errors.LockNotAvailable:
                    # The old leader's open transaction still holds the lease row: end it
                    # if it sits idle, and leave this shard for the next round rather
                    # than stall every other one.
                    self._end_idle_old_leader(shard)
                    self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (self.namespace, shard))
                    logger.info("event=lease_row_busy shard=%s holder=%s", shard, self.holder)
                    continue
            self.held[shard] = epoch
            gained.append(shard)
            logger.debug("event=shard_taken shard=%s epoch=%s holder=%s", shard, epoch, self.holder)
        if gained and self.leases:
            logger.info(
                "event=leadership_taken holder=%s shards=%s count=%d",
                self.holder,
                shard_ranges(gained),
                len(gained),
            )
        elif gained:
            logger.info("event=lock_taken holder=%s", self.holder)
        return gained

    def _end_idle_old_leader(self, shard: int) -> None:
        assert self._conn is not None
        rows = self._conn.execute(
            _END_IDLE_OLD_LEADER_SQL, (shard, self.holder, OLD_LEADER_IDLE_SECONDS)
        ).fetchall()
        for holder, ended in rows:
            logger.warning(
                "event=old_leader_transaction_ended shard=%s leader=%s by=%s ended=%s",
                shard,
                holder,
                self.holder,
                ended,
            )

    def _depose_frozen(self, shards: list[int]) -> None:
        assert self._conn is not None
        if self.leases:
            rows = self._conn.execute(_DEPOSE_FROZEN_SQL, (shards, self.lease_timeout))
        else:
            rows = self._conn.execute(
                _DEPOSE_IDLE_HOLDERS_SQL, (self.namespace, shards, self.lease_timeout)
            )
        for shard, holder, ended in rows.fetchall():
            logger.warning(
                "event=frozen_leader_deposed shard=%s leader=%s by=%s ended=%s",
                shard,
                holder,
                self.holder,
                ended,
            )

    def drop(self, shard: int) -> None:
        """Stop acting for `shard` (our epoch was found stale) and give its lock back, so
        that the lock and our bookkeeping agree again. Like a killed session, a deposed
        leader lets the standbys take over before it contests again."""
        if self.held.pop(shard, None) is None:
            return
        logger.warning("event=leadership_dropped shard=%s holder=%s", shard, self.holder)
        self._contest_after = time.monotonic() + self.rejoin_after
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (self.namespace, shard))
        except psycopg.Error as exc:
            logger.warning(
                "event=lock_session_lost holder=%s shards_dropped=%d error=%r",
                self.holder,
                len(self.held),
                exc,
            )
            self._close()
            self.held.clear()

    def release_all(self) -> None:
        """Give every shard back now (graceful shutdown) by ending the lock session."""
        self.held.clear()
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None


class SingleActiveLock:
    """One process of several active at a time (the reaper): a lock of its own namespace,
    checked every `check_every` seconds on a thread of its own, whatever the process is
    doing. The check is the heartbeat a standby judges it by: a frozen process stops
    checking, and once its lock session has sat idle for `lease_timeout` a standby ends
    that session and takes over (None: never); a long piece of work does not stop the
    checks."""

    def __init__(
        self,
        *,
        namespace: int,
        holder: str,
        lease_timeout: float | None,
        check_every: float = 1.0,
    ) -> None:
        self.holder = holder
        self._leadership = ShardLeadership(
            shards=[0],
            holder=holder,
            namespace=namespace,
            leases=False,
            lease_timeout=lease_timeout,
        )
        self._check_every = check_every
        self._active = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._keep_checking, name="lock", daemon=True)

    @property
    def active(self) -> bool:
        """Whether this process held the lock at the last check."""
        return self._active.is_set()

    def start(self) -> None:
        """Check once now, so that `active` answers at once, then keep checking."""
        self._check()
        self._thread.start()

    def close(self) -> None:
        """Stop checking and give the lock back."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join()
        self._leadership.release_all()
        self._active.clear()

    def _keep_checking(self) -> None:
        while not self._closing.wait(self._check_every):
            self._check()

    def _check(self) -> None:
        try:
            self._leadership.maintain()
        except Exception:
            logger.exception("event=lock_check_failed holder=%s", self.holder)
            self._leadership.release_all()
        if self._leadership.held:
            self._active.set()
        else:
            self._active.clear()
