"""Watching the stack through Postgres: a monitoring session of our own, and what it tells
about leadership (lease rows, advisory locks, who leads and how long a takeover took),
sessions and backlogs. The fault runner and the soak's start-up read these; nothing here
changes the system."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psycopg

from devtools.stack import wait_for
from outbox.leadership import REAPER_LOCK_NAMESPACE, SHARD_LOCK_NAMESPACE


class Probe:
    """A monitoring session of our own (never Django's), reconnecting after faults.

    Not thread-safe: each thread that watches the database makes its own."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._conn: psycopg.Connection | None = None

    def rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        for attempt in range(2):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(
                        self.url, autocommit=True, application_name=self.name, connect_timeout=3
                    )
                # No parameters, no placeholder parsing: a literal % stays a %.
                return self._conn.execute(sql, params or None).fetchall()
            except psycopg.OperationalError:
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def rows_or_none(self, sql: str, params: tuple | list = ()) -> list[tuple] | None:
        """The rows, or None while the database is unreachable (during a fault)."""
        try:
            return self.rows(sql, params)
        except psycopg.Error:
            return None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None


def timed(
    condition: Callable[[], object], *, timeout: float, what: str, every: float = 0.02
) -> float | None:
    """Seconds until `condition` held, or None if it did not within `timeout`."""
    started = time.monotonic()
    try:
        wait_for(condition, timeout=timeout, what=what, every=every)
    except AssertionError:
        return None
    return time.monotonic() - started


@dataclass
class Failover:
    kind: str
    deposed: str
    seconds: float | None
    new_holders: dict[str, int] = field(default_factory=dict)


class StackProbe:
    """What the database says about the stack's processes, through one monitoring session
    (`session`, reconnecting after faults). Read-only."""

    def __init__(
        self,
        session: Probe,
        *,
        halves: Mapping[int, tuple[str, ...]],
        reapers: tuple[str, ...],
        shard_count: int,
        pid_of: Callable[[str], int],
    ) -> None:
        """`halves`: the workers of each half of the shards; `reapers`: the reaper
        processes' names; `pid_of`: a process's pid by name (the stack's)."""
        self.session = session
        self.halves = halves
        self.reapers = reapers
        self.shard_count = shard_count
        self.pid_of = pid_of

    # -- leadership ------------------------------------------------------------------------

    def leases(self) -> dict[int, tuple[int, str]] | None:
        rows = self.session.rows_or_none("SELECT shard, epoch, holder FROM outbox_shardlease")
        return None if rows is None else {shard: (epoch, holder) for shard, epoch, holder in rows}

    def lock_holders(self) -> dict[int, str] | None:
        """Who holds each shard's advisory lock now (the truth the lease rows follow)."""
        rows = self.session.rows_or_none(
            "SELECT l.objid::int, a.application_name FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.classid = %s AND l.objsubid = 2 AND l.granted",
            (SHARD_LOCK_NAMESPACE,),
        )
        if rows is None:
            return None
        return {shard: name.removeprefix("leader ") for shard, name in rows}

    def held_by(self, half: int) -> dict[str, dict[int, int]]:
        """For each worker of `half`: the shards whose lock it holds, with their lease epochs."""
        leases = self.leases() or {}
        held: dict[str, dict[int, int]] = {name: {} for name in self.halves[half]}
        for shard, holder in (self.lock_holders() or {}).items():
            if holder in held:
                held[holder][shard] = leases.get(shard, (0, ""))[0]
        return held

    def leader(self, half: int) -> tuple[str, dict[int, int]] | None:
        """The worker of `half` leading most of its shards, with those shards' epochs."""
        held = self.held_by(half)
        name = max(held, key=lambda n: len(held[n]))
        return (name, held[name]) if held[name] else None

    def leases_follow_locks(self) -> bool:
        """Every shard's lock is held and its lease row names the lock's holder."""
        locks, leases = self.lock_holders(), self.leases()
        if locks is None or leases is None or len(locks) != self.shard_count:
            return False
        return all(leases.get(shard, (0, ""))[1] == holder for shard, holder in locks.items())

    def shard_locks_granted(self) -> int | None:
        rows = self.session.rows_or_none(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND objsubid = 2 AND granted",
            (SHARD_LOCK_NAMESPACE,),
        )
        return None if rows is None else rows[0][0]

    def await_takeover(
        self,
        kind: str,
        deposed: str,
        half: int,
        before: dict[int, int],
        *,
        timeout: float,
        same_allowed: bool = False,
    ) -> Failover:
        """Wait until every shard `deposed` led is led again, under a newer epoch, by a worker
        of the half (another worker unless `same_allowed`)."""
        workers = set(self.halves[half])

        def led_again() -> bool:
            now = self.leases()
            if now is None:
                return False
            return all(
                now[s][0] > epoch
                and now[s][1] in workers
                and (same_allowed or now[s][1] != deposed)
                for s, epoch in before.items()
            )

        seconds = timed(led_again, timeout=timeout, what=f"{kind}: takeover from {deposed}")
        after = self.leases() or {}
        holders = Counter(after[s][1] for s in before if s in after)
        return Failover(kind, deposed, seconds, dict(holders))

    def active_reaper(self) -> str | None:
        """The reaper process holding the reaper lock (its session is 'leader reaper
        HOST:PID:SUFFIX')."""
        rows = self.session.rows_or_none(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = 0 "
            "AND l.objsubid = 2 AND l.granted",
            (REAPER_LOCK_NAMESPACE,),
        )
        if not rows:
            return None
        pid = int(rows[0][0].split(":")[1])
        return next((name for name in self.reapers if self.pid_of(name) == pid), None)

    # -- sessions ----------------------------------------------------------------------------

    def sessions(self, application_name: str) -> list[int]:
        rows = self.session.rows_or_none(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        )
        return [pid for (pid,) in rows or []]

    def application_names(self) -> list[str] | None:
        """Every session's application_name, or None while the database is unreachable."""
        rows = self.session.rows_or_none("SELECT application_name FROM pg_stat_activity")
        return None if rows is None else [name for (name,) in rows]

    def listening(self) -> set[str] | None:
        """The workers with a listener session open."""
        rows = self.session.rows_or_none(
            "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s",
            ("listener %",),
        )
        return None if rows is None else {r[0].split(" ", 1)[1] for r in rows}

    def in_transaction(self, name: str) -> bool:
        rows = self.session.rows_or_none(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND xact_start IS NOT NULL",
            (name,),
        )
        return bool(rows)

    def blocked_sessions(self) -> list[str]:
        rows = self.session.rows_or_none(
            "SELECT application_name, state, wait_event_type, wait_event, "
            "left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' OR state = 'idle in transaction'"
        )
        return [" | ".join(str(c) for c in row) for row in rows or []]

    # -- backlogs ----------------------------------------------------------------------------

    def outbox_backlog(self, shards: list[int]) -> tuple[int, float]:
        """The outbox rows of `shards` and the oldest one's age in seconds."""
        rows = self.session.rows_or_none(
            "SELECT count(*), COALESCE(max(extract(epoch FROM now() - created_at)), 0) "
            "FROM outbox_outboxmessage WHERE shard = ANY(%s)",
            (shards,),
        )
        if not rows:
            return 0, 0.0
        count, age = rows[0]
        return count, float(age)

    def outbox_older_than(self, shards: list[int], seconds: float) -> int | None:
        """The outbox rows of `shards` created more than `seconds` ago."""
        rows = self.session.rows_or_none(
            "SELECT count(*) FROM outbox_outboxmessage WHERE shard = ANY(%s) "
            "AND created_at < now() - make_interval(secs => %s)",
            (shards, seconds),
        )
        return None if rows is None else rows[0][0]
