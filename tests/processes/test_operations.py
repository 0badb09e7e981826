"""What an operator sees of a running stack: readiness that knows the workers and the
reaper, and `manage.py status`, with a leader killed and its standby arriving later."""

from __future__ import annotations

import json

import pytest
import requests
from django.conf import settings

from devtools.database import manage
from devtools.stack import Stack, database_url, wait_for
from outbox.leadership import shard_ranges
from outbox.sharding import parse_shards

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def readiness(stack: Stack) -> tuple[int, dict]:
    response = requests.get(f"{stack.web_url}/readyz", timeout=5)
    return response.status_code, response.json()


def status(stack: Stack, monkeypatch) -> dict:
    monkeypatch.setenv("SHARD_COUNT", str(settings.SHARD_COUNT))
    monkeypatch.setenv("EXCHANGE_URL", stack.exchange_url)
    result = manage(database_url(), "status", "--json")
    return json.loads(result.stdout)


def test_readiness_and_status_follow_a_killed_leader_and_its_standby(tmp_path, monkeypatch):
    stack = Stack(
        tmp_path,
        database_url=database_url(),
        shard_count=settings.SHARD_COUNT,
        env={"WORKER_LEASE_TIMEOUT": "3"},
    )
    first_half = parse_shards("1/2", settings.SHARD_COUNT)
    try:
        stack.start_exchange()
        stack.start_web(workers=1)
        assert readiness(stack)[0] == 503  # nobody leads yet
        stack.start_worker("w1", "1/2")
        stack.start_worker("w2", "2/2")
        stack.start_reaper()
        code, body = wait_for(
            lambda: (r := readiness(stack))[0] == 200 and r,
            timeout=30,
            what="readiness with every shard led",
        )
        assert body["shards"] == {
            "count": settings.SHARD_COUNT,
            "led": settings.SHARD_COUNT,
            "leaderless": [],
        }
        assert body["workers"] == {
            "w1": len(first_half),
            "w2": settings.SHARD_COUNT - len(first_half),
        }
        assert body["reaper"].startswith("reaper ")
        healthy = status(stack, monkeypatch)
        assert healthy["ready"] is True
        assert healthy["exchange"]["reachable"] is True
        assert {s["leader"] for s in healthy["shards"]} == {"w1", "w2"}
        screen = manage(database_url(), "status").stdout
        assert screen.startswith(f"READY: {settings.SHARD_COUNT} of {settings.SHARD_COUNT}")
        assert f"shards {shard_ranges(first_half)}, epochs" in screen

        stack.kill("w1")
        code, body = wait_for(
            lambda: (r := readiness(stack))[0] == 503 and r,
            timeout=30,
            what="readiness to see the leader gone",
        )
        assert body["shards"]["leaderless"] == first_half
        assert body["workers"] == {"w2": settings.SHARD_COUNT - len(first_half)}
        degraded = status(stack, monkeypatch)
        assert degraded["ready"] is False
        assert degraded["leaderless_shards"] == first_half
        assert [w["name"] for w in degraded["workers"]] == ["w2"]
        assert all(
            s["leader"] is None and not s["led"]
            for s in degraded["shards"]
            if s["shard"] in first_half
        )

        stack.start_worker("w1-standby", "1/2")
        wait_for(lambda: readiness(stack)[0] == 200, timeout=30, what="the standby to take over")
        recovered = status(stack, monkeypatch)
    finally:
        stack.stop_all()
    assert recovered["ready"] is True
    assert {s["leader"] for s in recovered["shards"] if s["shard"] in first_half} == {"w1-standby"}
    assert all(s["epoch"] and s["heartbeat_age_s"] < 3 for s in recovered["shards"])


def test_status_reads_as_one_screen_for_a_person(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARD_COUNT", "4")
    monkeypatch.setenv("EXCHANGE_URL", "http://127.0.0.1:9")  # nothing listens there
    result = manage(database_url(), "status")
    assert result.stdout.startswith("NOT READY: 0 of 4 shards led, reaper NONE")
    assert "shards without a fresh leader: 0-3" in result.stdout
    assert "exchange: NOT reachable at http://127.0.0.1:9" in result.stdout
