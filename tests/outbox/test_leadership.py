"""Leadership and fencing over real sessions: advisory locks, pg_terminate_backend."""

from decimal import Decimal

import psycopg
import pytest
from django.db import connection

from outbox.fencing import StaleLeader
from outbox.leadership import ShardLeadership
from outbox.models import ShardLease
from outbox.sharding import shard_for_customer
from trades.execution import trade_send_next
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


def test_a_leader_whose_session_is_killed_is_fenced_out(leaderships, customer):
    shard = shard_for_customer(customer.id)
    old = leaderships("old", [shard])
    new = leaderships("new", [shard])
    old.maintain()
    stale_epoch = old.epoch(shard)
    trade = trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1).trade

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend_pid_of("old")])
    assert new.maintain() == ([shard], [])

    # The old leader has not noticed yet; its next write must change nothing.
    with pytest.raises(StaleLeader):
        trade_send_next(
            shard=shard, epoch=stale_epoch, customer_id=customer.id, quotes={"AAPL": Decimal(1)}
        )
    assert Trade.objects.get(id=trade.id).status == "placed"

    # ...and when it looks, it knows it lost the shard.
    assert old.maintain() == ([], [shard])
    order = trade_send_next(
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
