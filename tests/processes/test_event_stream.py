"""The live event stream with real processes: the stream server (uvicorn), the web, a
shard worker, the callback receiver and the exchange simulator, behind nginx.

A client that drops its stream and comes back with its last id misses nothing and gets
nothing twice; a stream outlives a Postgres restart; one stream server holds a thousand
streams at once."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from api_keys.services import api_key_revoke
from devtools import embedded_postgres
from devtools.database import manage, migrate
from devtools.sse import SseClient, SseEvent, open_async_stream
from devtools.stack import Stack, wait_for
from events.models import CustomerEvent
from tests.factories import create_customer
from tests.processes.test_execution_processes import assert_audit_passes, place_many
from trades.models import Trade

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

FINAL = {"trade_filled", "trade_rejected", "trade_cancelled"}


def finished_trades(events: list[SseEvent]) -> set[int]:
    return {e.body["data"]["id"] for e in events if e.type in FINAL}


def the_log(base_url: str, token: str) -> list[dict]:
    """The customer's whole event log through GET /api/v1/events/."""
    headers = {"Authorization": f"Token {token}"}

    def answered(url: str) -> requests.Response | None:
        # A web worker whose session the database dropped answers one 503, then reconnects.
        response = requests.get(url, headers=headers, timeout=10)
        return None if response.status_code == 503 else response

    events: list[dict] = []
    url: str | None = f"{base_url}/api/v1/events/?limit=200"
    while url:
        response = wait_for(partial(answered, url), timeout=10, what="the web")
        assert response is not None
        page = response.json()
        events += page["results"]
        url = page["next"]
    return events


def stream_health(stack: Stack) -> dict:
    return requests.get(f"http://127.0.0.1:{stack.stream_port}/healthz", timeout=5).json()


def start_trading_stack(stack: Stack, **stream_env: str) -> None:
    stack.start_exchange("--fill-delay-ms", "1,20", "--reject-rate", "0.2")
    stack.start_web()
    stack.start_callbacks()
    stack.start_worker("w1")
    stack.start_stream(**stream_env)


def test_a_client_back_with_its_last_id_gets_every_event_once_in_order(stack):
    start_trading_stack(stack, STREAM_HEARTBEAT_SECONDS="1", STREAM_MAX_PER_CUSTOMER="2")
    stack.start_proxy()
    customer = create_customer(cash="100000.00", positions={"AAPL": 20})

    first = SseClient(stack.stream_url, customer.token)
    place_many(stack, [customer], 3)
    first.read_until(lambda events: len(finished_trades(events)) == 3, timeout=30)
    # Three more, and the client drops in the middle of their events, leaving whatever
    # the server had already sent it unread.
    place_many(stack, [customer], 3, side="sell")
    first.read_until(lambda events: any(e.type == "trade_placed" for e in events[-1:]), timeout=30)
    seen = list(first.events)
    first.close()
    wait_for(lambda: stream_health(stack)["streams"] == 0, timeout=10, what="the stream closed")
    place_many(stack, [customer], 3)
    wait_for(
        lambda: not Trade.objects.filter(customer_id=customer.id, status__in=Trade.OPEN).exists(),
        timeout=30,
        what="every trade to end",
    )

    last = CustomerEvent.objects.filter(customer_id=customer.id).count()
    second = SseClient(stack.stream_url, customer.token, last_event_id=seen[-1].id)
    rest = second.read_until(lambda events: events and events[-1].id == last, timeout=30)
    second.read_until(lambda events: second.comments >= 2, timeout=10)  # heartbeats
    second.close()

    received = [*seen, *rest]
    assert [e.id for e in received] == list(range(1, last + 1))
    assert [e.body for e in received] == the_log(stack.web_url, customer.token)
    assert [e.type for e in received] == [e.body["type"] for e in received]
    assert len(finished_trades(received)) == 9
    by_trade: dict[int, list[str]] = {}
    for event in received:
        if event.type != "activity":
            by_trade.setdefault(event.body["data"]["id"], []).append(event.body["data"]["status"])
    assert by_trade == {
        t.id: (["placed", "in_progress", t.status] if t.submitted_at else ["placed", t.status])
        for t in Trade.objects.filter(customer_id=customer.id)
    }
    assert_audit_passes()


def test_streams_are_refused_clearly_capped_per_customer_and_ended_with_their_key(stack):
    start_trading_stack(stack, STREAM_MAX_PER_CUSTOMER="2", STREAM_SWEEP_SECONDS="0.5")
    stack.start_proxy()
    customer = create_customer()
    url = f"{stack.stream_url}/api/v1/events/stream/"
    auth = {"Authorization": f"Token {customer.token}"}

    held = [SseClient(stack.stream_url, customer.token) for _ in range(2)]
    over = requests.get(url, headers=auth, timeout=5)
    assert over.status_code == 429 and over.json()["error"] == "too_many_streams"
    held.pop().close()
    wait_for(lambda: stream_health(stack)["streams"] == 1, timeout=10, what="a stream closed")
    again = SseClient(stack.stream_url, customer.token)
    assert again.response.status_code == 200
    assert again.response.headers["Content-Type"].startswith("text/event-stream")

    refusals = {
        "none": requests.get(url, timeout=5),
        "bad": requests.get(url, headers={"Authorization": "Token " + "0" * 40}, timeout=5),
        "resume": requests.get(url, headers={**auth, "Last-Event-ID": "x"}, timeout=5),
        "huge": requests.get(url, headers={**auth, "Last-Event-ID": "9" * 5000}, timeout=5),
        "ahead": requests.get(url, headers={**auth, "Last-Event-ID": "3"}, timeout=5),
        "post": requests.post(url, headers=auth, timeout=5),
        "head": requests.head(url, headers=auth, timeout=5),
    }
    assert {name: r.status_code for name, r in refusals.items()} == {
        "none": 401,
        "bad": 401,
        "resume": 400,
        "huge": 400,
        "ahead": 400,
        "post": 405,
        "head": 405,
    }
    assert refusals["ahead"].json()["error"] == "last_event_id_ahead"
    assert refusals["post"].headers["Allow"] == "GET"
    assert all("error" in r.json() for name, r in refusals.items() if name != "head")

    # A key rotated away ends the streams opened with it (the sweep looks).
    api_key_revoke(customer_id=customer.id)
    for client in (*held, again):
        with pytest.raises(StopIteration):
            client.read_until(lambda events: False, timeout=15)
    wait_for(lambda: stream_health(stack)["streams"] == 0, timeout=10, what="streams ended")
    assert requests.get(url, headers=auth, timeout=5).status_code == 401
    with connection.cursor() as cursor:  # not a model's table: a flush leaves it as it was
        cursor.execute("DELETE FROM brokerage_auth_failure")


@pytest.fixture
def own_postgres():
    """A Postgres of this test's own, which it may restart: (url, data directory)."""
    root = Path(tempfile.mkdtemp(prefix="brokerage-stream-"))
    os.chmod(root, 0o755)
    pgdata = root / "pg"
    try:
        url = embedded_postgres.ensure_running(pgdata)
        migrate(url)
        yield url, pgdata
    finally:
        embedded_postgres.stop(pgdata, mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_a_stream_stays_open_through_a_postgres_restart_and_misses_nothing(tmp_path, own_postgres):
    url, pgdata = own_postgres
    demo = json.loads(manage(url, "seed_demo", "--count", "1").stdout.splitlines()[0])
    stack = Stack(
        tmp_path, database_url=url, shard_count=settings.SHARD_COUNT, separate_callbacks=True
    )
    try:
        # The sweep is all but off: what the stream gets after the restart, it gets because
        # its server listens again and wakes it.
        start_trading_stack(stack, STREAM_HEARTBEAT_SECONDS="1", STREAM_SWEEP_SECONDS="600")
        client = SseClient(stack.stream_url, demo["token"])
        with requests.Session() as session:
            assert stack.place(session, demo["token"], ticker="AAPL", side="buy", quantity=1).ok
            client.read_until(lambda events: len(finished_trades(events)) == 1, timeout=30)

            embedded_postgres.restart(pgdata)
            heartbeats = client.comments
            client.read_until(lambda events: client.comments > heartbeats, timeout=10)
            wait_for(lambda: stream_health(stack)["status"] == "ok", timeout=20, what="LISTEN")
            placed = 0
            for _ in range(2):
                response = wait_for(
                    lambda: (
                        r
                        if (
                            r := stack.place(
                                session, demo["token"], ticker="AAPL", side="buy", quantity=1
                            )
                        ).status_code
                        != 503
                        else None
                    ),
                    timeout=20,
                    what="the web to place again",
                )
                placed += response.status_code == 201
        assert placed == 2
        client.read_until(lambda events: len(finished_trades(events)) == 3, timeout=30)
        log = the_log(stack.web_url, demo["token"])
        client.read_until(lambda events: events[-1].id == log[-1]["seq"], timeout=10)
        client.close()
        assert [e.body for e in client.events] == log
        assert [e.id for e in client.events] == list(range(1, len(log) + 1))
    finally:
        stack.stop_all()


def test_one_stream_server_holds_a_thousand_streams_and_feeds_each_its_own(stack):
    count = 1000
    stack.start_stream(STREAM_HEARTBEAT_SECONDS="5")
    customers = [create_customer(cash="1.00") for _ in range(count)]

    async def run() -> dict[int, list[SseEvent]]:
        direct = f"http://127.0.0.1:{stack.stream_port}"
        streams = [await open_async_stream(direct, c.token) for c in customers]
        assert {s.status for s in streams} == {200}
        received: dict[int, list[SseEvent]] = {c.id: [] for c in customers}
        readers = [
            asyncio.create_task(s.run(received[c.id].append))
            for s, c in zip(streams, customers, strict=True)
        ]
        # Each customer's funding (seq 1), then one more event each, made while all
        # thousand streams are open.
        await asyncio.to_thread(
            wait_for,
            lambda: stream_health(stack)["streams"] == count,
            timeout=30,
            what="every stream open",
        )
        await asyncio.to_thread(manage, stack.env["DATABASE_URL"], "shell", "-c", DEPOSIT_EACH)
        deadline = asyncio.get_running_loop().time() + 60
        while any(len(events) < 2 for events in received.values()):
            assert asyncio.get_running_loop().time() < deadline, "not every stream got its event"
            await asyncio.sleep(0.1)
        for s in streams:
            s.close()
        await asyncio.gather(*readers)
        return received

    received = asyncio.run(run())
    for customer in customers:
        events = received[customer.id]
        assert [e.id for e in events] == [1, 2]
        assert [e.body["data"]["kind"] for e in events] == ["deposit", "deposit"]
        assert events[1].body["data"]["cash_after"] == "2.00"


DEPOSIT_EACH = """
from decimal import Decimal
from balances.models import Account
from balances.services import cash_deposit
from django.db import transaction
for customer_id in Account.objects.values_list("customer_id", flat=True):
    with transaction.atomic():
        cash_deposit(customer_id=customer_id, amount=Decimal("1.00"))
# Before the process exits: the waker's thread sends on its own time.
from outbox.notify import shard_waker
shard_waker().flush()
"""
