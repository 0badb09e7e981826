"""A shard worker and a reaper whose only database is a hot standby. Postgres grants a
session advisory lock there (locks are not replicated), so without a check each would
believe it leads; neither may lock anything there, and both must keep trying for a
primary."""

from __future__ import annotations

import json

import psycopg
import pytest
import requests
from django.conf import settings

from devtools.database import manage
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
            for taken in ("event=leadership_taken", "event=lock_taken"):
                assert taken not in log, f"{name} took leadership:\n{log}"
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


def test_the_web_and_the_admin_on_a_hot_standby_answer_503_and_write_nothing(
    cluster: PrimaryAndStandby, tmp_path
):
    """A web process whose single-host URL names a node a failover demoted: every request
    that must write is a 503 database_unavailable to retry, never a 500."""
    made = manage(cluster.primary_url, "create_customer", "alice", "--cash", "1000.00")
    token = json.loads(made.stdout.splitlines()[-1])["token"]
    with psycopg.connect(cluster.standby_url, autocommit=True) as standby:
        wait_for(
            lambda: standby.execute("SELECT count(*) FROM balances_account").fetchone() == (1,),
            timeout=30,
            what="the standby to replay the customer",
        )
    stack = Stack(tmp_path, database_url=cluster.standby_url, shard_count=settings.SHARD_COUNT)
    try:
        stack.start_web(workers=1)
        stack.start_admin()
        placed = requests.post(
            f"{stack.web_url}/api/v1/trades/",
            json={"ticker": "AAPL", "side": "buy", "quantity": 1, "client_order_id": "k-1"},
            headers={"Authorization": f"Token {token}"},
            timeout=10,
        )
        login_page = requests.get(f"http://127.0.0.1:{stack.admin_port}/admin/login/", timeout=10)
        login = requests.post(
            f"http://127.0.0.1:{stack.admin_port}/admin/login/",
            data={
                "username": "nobody",
                "password": "wrong",
                "csrfmiddlewaretoken": login_page.cookies.get("csrftoken", ""),
            },
            cookies=login_page.cookies,
            headers={"Referer": f"http://127.0.0.1:{stack.admin_port}/admin/login/"},
            timeout=10,
        )
    finally:
        stack.stop_all()

    for response in (placed, login):
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "database_unavailable"
        assert response.headers["Retry-After"] == "1"
    with psycopg.connect(cluster.primary_url, autocommit=True) as primary:
        assert primary.execute("SELECT count(*) FROM trades_trade").fetchone() == (0,)
