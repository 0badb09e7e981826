"""A shard worker and a reaper whose only database is a hot standby. Postgres grants a
session advisory lock there (locks are not replicated), so without a check each would
believe it leads; neither may lock anything there, and both must keep trying for a
primary."""

from __future__ import annotations

import psycopg
import pytest
from django.conf import settings

from devtools.stack import Stack, wait_for
from tests.standby_cluster import ADVISORY_LOCKS_SQL, PrimaryAndStandby, primary_and_hot_standby

pytestmark = pytest.mark.processes

ON_STANDBY = "event=session_on_standby session="


@pytest.fixture
def cluster():
    with primary_and_hot_standby(migrated=True) as cluster:
        yield cluster


def test_a_worker_and_a_reaper_on_a_hot_standby_lead_nothing_and_keep_trying(
    cluster: PrimaryAndStandby, tmp_path
):
    stack = Stack(tmp_path, database_url=cluster.standby_url, shard_count=settings.SHARD_COUNT)
    locks_seen: list[tuple[int, str | None]] = []

    def logs() -> dict[str, str]:
        return {
            name: (tmp_path / f"{name}.log").read_text(errors="replace") for name in stack.procs
        }

    def both_retried_without_leading() -> bool:
        locks_seen.extend(observer.execute(ADVISORY_LOCKS_SQL).fetchall())
        assert not locks_seen, f"advisory locks on the standby: {locks_seen}"
        text = logs()
        for name, log in text.items():
            assert "event=leadership_taken" not in log, f"{name} took leadership:\n{log}"
            assert stack.procs[name].poll() is None, f"{name} exited:\n{log}"
        return (
            text["worker"].count(f"{ON_STANDBY}'leader worker'") >= 2
            and text["reaper"].count(f"{ON_STANDBY}'leader reaper ") >= 2
        )

    try:
        with psycopg.connect(cluster.standby_url, autocommit=True) as observer:
            stack.start_worker("worker")
            stack.start_reaper()
            wait_for(
                both_retried_without_leading,
                timeout=30,
                what="the worker and the reaper to find the standby twice each",
            )
        text = logs()
    finally:
        stack.stop_all()

    assert f"{ON_STANDBY}'listener worker'" in text["worker"]
    assert "host=" in text["worker"] and "port=5432" in text["worker"]
    # Nothing was tried there that a standby refuses: no lease written, no LISTEN.
    assert " ERROR: " not in cluster.standby_server_log(), cluster.standby_server_log()
