"""leadership_now: who leads each shard as the database sees it, read by /readyz and
`manage.py status`."""

import pytest

from outbox.health import leadership_now
from outbox.leadership import REAPER_LOCK_NAMESPACE, ShardLeadership

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("name", ["w1", "a-worker-with-a-name-longer-than-postgres-keeps-" * 2])
def test_a_leader_is_found_by_its_lock_and_lease_whatever_the_length_of_its_name(name):
    leadership = ShardLeadership(shards=[0, 1], holder=name, lease_timeout=3.0)
    reaper = ShardLeadership(
        shards=[0], holder="reaper host:1:abc", namespace=REAPER_LOCK_NAMESPACE, leases=False
    )
    try:
        assert leadership.maintain()[0] == [0, 1]
        assert reaper.maintain()[0] == [0]
        seen = leadership_now(shard_count=3)
    finally:
        leadership.release_all()
        reaper.release_all()
    assert [s.leader for s in seen.shards] == [name, name, None]
    assert all(s.led(3.0) and s.epoch for s in seen.shards[:2])
    assert seen.leaderless(3.0) == [2]
    assert seen.reaper == "reaper host:1:abc"
    assert list(seen.workers.values()) == [[0, 1]]
