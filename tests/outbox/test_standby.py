"""The dedicated sessions on a hot standby: Postgres grants an advisory lock there (locks
are not replicated, so it guards nothing), and refuses LISTEN and NOTIFY. Each session
must find out as it connects, say so, close, and be tried again like a lost one."""

import logging
from unittest import mock

import psycopg
import pytest
from django.db import connections

from outbox.connections import ServerIsStandby, dedicated_connection
from outbox.leadership import REAPER_LOCK_NAMESPACE, SHARD_LOCK_NAMESPACE, ShardLeadership
from outbox.notify import ShardListener
from tests.standby_cluster import advisory_locks, primary_and_hot_standby

ON_STANDBY = "event=session_on_standby"


@pytest.fixture(scope="module")
def cluster():
    with primary_and_hot_standby(migrated=False) as cluster:
        yield cluster


@pytest.fixture
def on_standby(cluster, caplog):
    """Django's database settings name the standby (only the dedicated sessions use them
    here)."""
    info = psycopg.conninfo.conninfo_to_dict(cluster.standby_url)
    standby = {"HOST": info["host"], "PORT": info["port"], "NAME": info["dbname"]}
    caplog.set_level(logging.INFO, logger="outbox")
    with mock.patch.dict(connections["default"].settings_dict, standby):
        yield cluster


def messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def sessions_named(url: str, name: str) -> list[tuple[int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        sql = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        return conn.execute(sql, (name,)).fetchall()


def test_a_session_on_a_standby_is_refused_logged_and_closed(on_standby, caplog):
    with pytest.raises(ServerIsStandby):
        dedicated_connection("probe")
    (line,) = messages(caplog)
    host = connections["default"].settings_dict["HOST"]
    assert line.startswith(f"{ON_STANDBY} session='probe' host={host} port=5432: "), line
    assert sessions_named(on_standby.standby_url, "probe") == []


@pytest.mark.parametrize(
    ("namespace", "leases"),
    [(SHARD_LOCK_NAMESPACE, True), (REAPER_LOCK_NAMESPACE, False)],
    ids=["shard worker", "reaper"],
)
def test_a_leadership_on_a_standby_takes_no_lock_and_tries_again(
    on_standby, caplog, namespace, leases
):
    leadership = ShardLeadership(
        shards=[0, 1, 2], holder="on-standby", namespace=namespace, leases=leases, rejoin_after=0
    )
    try:
        assert leadership.maintain() == ([], [])
        assert leadership.maintain() == ([], [])
        assert advisory_locks(on_standby.standby_url) == []
    finally:
        leadership.release_all()
    lines = messages(caplog)
    assert [line.split(" host=")[0] for line in lines] == [
        f"{ON_STANDBY} session='leader on-standby'"
    ] * 2, lines


def test_a_leadership_waits_before_trying_a_standby_again(on_standby, caplog):
    leadership = ShardLeadership(shards=[0], holder="patient", rejoin_after=60.0)
    assert leadership.maintain() == ([], [])
    assert leadership.maintain() == ([], [])
    assert len(messages(caplog)) == 1


def test_a_listener_on_a_standby_never_listens(on_standby, caplog):
    listener = ShardListener([1, 2], "listener on-standby")
    for _ in range(2):
        with pytest.raises(ServerIsStandby):
            listener.wait(0.1)
    assert len(messages(caplog)) == 2
    assert "LISTEN" not in on_standby.standby_server_log()
