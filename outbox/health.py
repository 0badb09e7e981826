"""Who leads, as the database sees it: every shard's lock holder, epoch and heartbeat, the
workers' lock sessions (those holding no shard stand by), and the active reaper. Read by
the readiness endpoint and by `manage.py status`."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from outbox.leadership import REAPER_LOCK_NAMESPACE, SHARD_LOCK_NAMESPACE

LEADER_PREFIX = "leader "
REAPER_PREFIX = "leader reaper "

_LOCK_SESSIONS_SQL = """
SELECT a.pid, a.application_name,
       array_remove(array_agg(l.objid::int ORDER BY l.objid)
                    FILTER (WHERE l.classid = %(shards)s), NULL),
       bool_or(l.classid = %(reaper)s)
FROM pg_stat_activity a
LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.objsubid = 2
  AND l.granted AND l.classid IN (%(shards)s, %(reaper)s)
WHERE a.datname = current_database() AND a.application_name LIKE 'leader %%'
GROUP BY a.pid, a.application_name
"""
_LEASES_SQL = """
SELECT shard, epoch, holder, extract(epoch FROM now() - heartbeat_at)::float8
FROM outbox_shardlease
"""


@dataclass(frozen=True)
class ShardState:
    shard: int
    # The worker whose lock session holds the shard's lock, if any.
    leader: str | None
    epoch: int | None
    heartbeat_age_s: float | None

    def led(self, lease_timeout: float) -> bool:
        """Locked by a worker whose lease names it and whose heartbeat is fresh."""
        return (
            self.leader is not None
            and self.heartbeat_age_s is not None
            and self.heartbeat_age_s < lease_timeout
        )


@dataclass(frozen=True)
class Leadership:
    shards: list[ShardState]
    # Each worker's lock session: its name -> the shards it leads (none: a standby).
    workers: dict[str, list[int]]
    reaper: str | None
    # Reapers whose lock session waits for the reaper lock.
    standby_reapers: list[str]

    def leaderless(self, lease_timeout: float) -> list[int]:
        return [state.shard for state in self.shards if not state.led(lease_timeout)]


def leadership_now(shard_count: int | None = None) -> Leadership:
    """One look at pg_locks, pg_stat_activity and the lease rows (on Django's session)."""
    count = settings.SHARD_COUNT if shard_count is None else shard_count
    with connection.cursor() as cursor:
        cursor.execute(
            _LOCK_SESSIONS_SQL, {"shards": SHARD_LOCK_NAMESPACE, "reaper": REAPER_LOCK_NAMESPACE}
        )
        sessions = cursor.fetchall()
        cursor.execute(_LEASES_SQL)
        leases = {shard: (epoch, holder, age) for shard, epoch, holder, age in cursor.fetchall()}
    locked_by: dict[int, str] = {}
    workers: dict[str, list[int]] = {}
    reaper, standby_reapers = None, []
    for _pid, name, shards, holds_reaper_lock in sessions:
        if name.startswith(REAPER_PREFIX):
            holder = name.removeprefix(LEADER_PREFIX)
            if holds_reaper_lock:
                reaper = holder
            else:
                standby_reapers.append(holder)
            continue
        worker = name.removeprefix(LEADER_PREFIX)
        workers[worker] = list(shards or [])
        for shard in shards or []:
            locked_by[shard] = worker
    states = []
    for shard in range(count):
        epoch, holder, age = leases.get(shard, (None, None, None))
        leader = locked_by.get(shard)
        if leader is not None and holder is not None and _same_session(holder, leader):
            states.append(ShardState(shard, leader=holder, epoch=epoch, heartbeat_age_s=age))
        else:
            states.append(ShardState(shard, leader=leader, epoch=None, heartbeat_age_s=None))
    return Leadership(
        shards=states,
        workers=dict(sorted(workers.items())),
        reaper=reaper,
        standby_reapers=sorted(standby_reapers),
    )


def _same_session(holder: str, session_name: str) -> bool:
    """Whether the lease's holder is the worker whose lock session is named `session_name`
    (Postgres cuts application_name at 63 characters)."""
    return (LEADER_PREFIX + holder)[:63] == LEADER_PREFIX + session_name


@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers, every shard has a leader with a fresh heartbeat and
    a reaper is active; otherwise 503, with what is missing."""
    try:
        leadership = leadership_now()
    except DatabaseError:
        return JsonResponse({"status": "not_ready", "database": "down"}, status=503)
    leaderless = leadership.leaderless(settings.WORKER_LEASE_TIMEOUT)
    ready = not leaderless and leadership.reaper is not None
    body = {
        "status": "ready" if ready else "not_ready",
        "database": "up",
        "shards": {
            "count": len(leadership.shards),
            "led": len(leadership.shards) - len(leaderless),
            "leaderless": leaderless,
        },
        "workers": {name: len(shards) for name, shards in leadership.workers.items()},
        "reaper": leadership.reaper,
    }
    return JsonResponse(body, status=200 if ready else 503)
