"""Leadership and fencing over real sessions: advisory locks, pg_terminate_backend."""

import time
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection

from devtools.stack import wait_for
from execution.in_flight import trade_put_in_flight
from outbox.fencing import StaleLeader
from outbox.leadership import REAPER_LOCK_NAMESPACE, ShardLeadership, SingleActiveLock
from outbox.models import ShardLease
from outbox.sharding import shard_for_customer
from trades.models import Trade
from trades.services import trade_place

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def leaderships():
    made = []

    def make(name, shards):
        leadership = ShardLeadership(shards=shards, holder=name)
        made.append(leadership)
        return leadership

    yield make
    for leadership in made:
        leadership.release_all()


def backend_pid_of(holder: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [f"leader {holder}"]
        )
        return cursor.fetchone()[0]


def test_one_leader_per_shard_and_each_takeover_bumps_the_epoch(leaderships):
    a = leaderships("a", [1, 2, 3])
    b = leaderships("b", [2, 3, 4])

    assert a.maintain() == ([1, 2, 3], [])
    assert b.maintain() == ([4], [])
    assert a.maintain() == ([], [])  # nothing re-acquired: session locks would stack
    epoch_a = a.epoch(2)

    a.release_all()
    gained, _ = b.maintain()

    assert gained == [2, 3]
    assert b.epoch(2) == epoch_a + 1
    assert ShardLease.objects.get(shard=2).holder == "b"


def test_a_deposed_leader_lets_the_standby_take_its_shard_first(leaderships):
    deposed = leaderships("deposed", [5])
    standby = leaderships("standby", [5])
    assert deposed.maintain() == ([5], [])

    deposed.drop(5)  # its epoch was found stale
    assert deposed.maintain() == ([], [])  # it does not contest again at once
    assert standby.maintain() == ([5], [])


def test_a_leader_whose_session_is_killed_is_fenced_out(leaderships, customer):
    shard = shard_for_customer(customer.id)
    old = leaderships("old", [shard])
    new = leaderships("new", [shard])
    old.maintain()
    stale_epoch = old.epoch(shard)
    trade = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1).trade

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend_pid_of("old")])
    wait_for(lambda: new.maintain() and shard in new.held, timeout=5, what="the new leader")

    # The old leader has not noticed yet; its next write must change nothing.
    with pytest.raises(StaleLeader):
        trade_put_in_flight(
            shard=shard, epoch=stale_epoch, customer_id=customer.id, quotes={"AAPL": Decimal(1)}
        )
    assert Trade.objects.get(id=trade.id).status == "placed"

    # ...and when it looks, it knows it lost the shard.
    assert old.maintain() == ([], [shard])
    order = trade_put_in_flight(
        shard=shard, epoch=new.epoch(shard), customer_id=customer.id, quotes={"AAPL": Decimal(1)}
    )
    assert order is not None


def test_a_new_leaders_epoch_bump_waits_for_the_old_leaders_open_transaction(customer):
    """The fence is a share lock: a takeover cannot slip between the check and the commit."""
    ShardLease.objects.create(shard=5, epoch=1, holder="old")
    params = connection.get_connection_params()
    with (
        psycopg.connect(**params, autocommit=False) as old,
        psycopg.connect(**params, autocommit=True) as new,
    ):
        old.execute("SELECT epoch FROM outbox_shardlease WHERE shard = 5 FOR SHARE")
        new.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            new.execute("UPDATE outbox_shardlease SET epoch = epoch + 1 WHERE shard = 5")
        old.commit()
        new.execute("UPDATE outbox_shardlease SET epoch = epoch + 1 WHERE shard = 5")
    assert ShardLease.objects.get(shard=5).epoch == 2


def test_a_frozen_leader_is_deposed_after_the_lease_timeout(leaderships):
    frozen = leaderships("frozen", [7])
    standby = ShardLeadership(shards=[7], holder="standby", lease_timeout=0.5)
    frozen.maintain()
    first_epoch = frozen.epoch(7)
    # The frozen leader stops beating: make its heartbeat old instead of waiting.
    ShardLease.objects.filter(shard=7).update(
        heartbeat_at=ShardLease.objects.get(shard=7).heartbeat_at - timedelta(seconds=5)
    )
    try:
        assert standby.maintain() == ([], [])  # ends the frozen leader's lock session
        # The ended backend releases its lock as it exits, a moment later.
        wait_for(lambda: standby.maintain() and 7 in standby.held, timeout=5, what="the lock")
        assert standby.epoch(7) == first_epoch + 1
        assert frozen.maintain() == ([], [7])
    finally:
        standby.release_all()


def test_a_live_leader_keeps_its_shard(leaderships):
    live = leaderships("live", [8])
    standby = leaderships("standby", [8])
    standby.lease_timeout = 0.5
    live.maintain()
    assert standby.maintain() == ([], [])
    assert live.maintain() == ([], [])
    assert live.epoch(8) is not None


def test_the_reapers_lock_never_touches_shard_leases(leaderships):
    leaderships("worker", [0]).maintain()
    epoch = ShardLease.objects.get(shard=0).epoch
    reaper = leaderships("reaper", [0])
    reaper.namespace = REAPER_LOCK_NAMESPACE
    reaper.leases = False

    assert reaper.maintain() == ([0], [])
    assert ShardLease.objects.get(shard=0).epoch == epoch
    assert ShardLease.objects.get(shard=0).holder == "worker"


def test_a_deposed_leader_frozen_inside_a_transaction_does_not_hold_up_the_takeover(
    leaderships,
):
    """Its lock session is gone, but its work session sits idle in a transaction that
    share-locks the lease row (a process stopped mid-transaction): the standby ends that
    transaction instead of waiting for the server's idle timeout."""
    old = leaderships("old", [9])
    standby = leaderships("standby", [9])
    old.maintain()
    first_epoch = old.epoch(9)
    params = {**connection.get_connection_params(), "application_name": "worker old"}
    with (
        psycopg.connect(**params, autocommit=False) as frozen_work,
        # Same name, idle in a transaction too, but not holding the lease row; and the
        # same in another database of the cluster. Neither may be touched.
        psycopg.connect(**params, autocommit=False) as bystander,
        psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=False) as elsewhere,
    ):
        frozen_work.execute("SELECT epoch FROM outbox_shardlease WHERE shard = 9 FOR SHARE")
        bystander.execute("SELECT txid_current()")
        elsewhere.execute("SELECT txid_current()")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend_pid_of("old")])

        wait_for(lambda: standby.maintain() and 9 in standby.held, timeout=2, what="takeover")

        assert standby.epoch(9) == first_epoch + 1
        with pytest.raises(psycopg.OperationalError):
            frozen_work.execute("SELECT 1")
        assert bystander.execute("SELECT 1").fetchone() == (1,)
        assert elsewhere.execute("SELECT 1").fetchone() == (1,)


def reaper_lock_holder() -> str | None:
    """The application name of the session holding the reaper lock in this database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objsubid = 2 "
            "AND l.granted AND a.datname = current_database()",
            [REAPER_LOCK_NAMESPACE],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def reaper_leadership(name: str) -> ShardLeadership:
    return ShardLeadership(
        shards=[0], holder=name, namespace=REAPER_LOCK_NAMESPACE, leases=False, lease_timeout=1.0
    )


def test_a_frozen_reaper_is_deposed_once_its_lock_session_sat_idle_past_the_timeout():
    """The reaper keeps no lease row: its lock session's own activity is its heartbeat."""
    frozen = reaper_leadership("frozen reaper")  # checks once, then never again
    standby = SingleActiveLock(
        namespace=REAPER_LOCK_NAMESPACE, holder="standby reaper", lease_timeout=1.0, check_every=0.1
    )
    assert frozen.maintain() == ([0], [])
    # The same lock in another database of the cluster is another reaper's business.
    params = {**connection.get_connection_params(), "dbname": "postgres"}
    try:
        with psycopg.connect(**params, autocommit=True) as elsewhere:
            elsewhere.execute("SELECT pg_advisory_lock(%s, 0)", [REAPER_LOCK_NAMESPACE])
            standby.start()
            assert not standby.active
            assert reaper_lock_holder() == "leader frozen reaper"

            wait_for(lambda: standby.active, timeout=10, what="the standby to take over")

            assert reaper_lock_holder() == "leader standby reaper"
            assert elsewhere.execute("SELECT 1").fetchone() == (1,)
        assert frozen.maintain() == ([], [0])
        assert not ShardLease.objects.filter(holder__contains="reaper").exists()
    finally:
        standby.close()
        frozen.release_all()


def test_a_reaper_busy_for_longer_than_the_timeout_keeps_its_lock():
    """Its lock is checked on a thread of its own, whatever its main thread is doing."""
    busy = SingleActiveLock(
        namespace=REAPER_LOCK_NAMESPACE, holder="busy reaper", lease_timeout=1.0, check_every=0.1
    )
    standby = reaper_leadership("standby reaper")
    busy.start()
    try:
        assert busy.active
        # Three times the timeout without the main thread touching the lock.
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            assert standby.maintain() == ([], [])
            time.sleep(0.1)  # the standby's own check cadence
        assert busy.active
        assert reaper_lock_holder() == "leader busy reaper"
    finally:
        busy.close()
        standby.release_all()
    # The server lets go of a closed session's locks as its backend exits, just after.
    wait_for(lambda: reaper_lock_holder() is None, timeout=5, what="the lock to be free")
