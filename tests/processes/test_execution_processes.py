"""The whole trade path with real processes: gunicorn, shard workers, the reaper and the
exchange simulator, each its own process, over real connections to one Postgres."""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.conf import settings
from django.db import connection

from devtools.stack import Stack, database_url, wait_for
from execution.audit import audit
from execution.in_flight import INSUFFICIENT_FUNDS, INSUFFICIENT_SHARES
from outbox.models import ShardLease
from tests.factories import create_customer
from trades.models import Trade

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


@pytest.fixture
def stack(transactional_db, tmp_path):
    stack = Stack(tmp_path, database_url=database_url(), shard_count=settings.SHARD_COUNT)
    yield stack
    stack.stop_all()


def open_trades() -> int:
    return Trade.objects.filter(status__in=Trade.OPEN).count()


def wait_until_all_terminal(timeout: float = 60) -> None:
    wait_for(lambda: open_trades() == 0, timeout=timeout, what="every trade to be terminal")


def assert_audit_passes(quiescent: bool = True) -> None:
    broken = [(c.name, c.failures) for c in audit(quiescent=quiescent) if not c.ok]
    assert not broken, broken


def assert_exchange_saw_customer_order(stack: Stack) -> None:
    stats = stack.exchange_stats()
    assert stats["out_of_order"] == 0, stats
    assert stats["overlapping"] == 0, stats
    by_account = defaultdict(list)
    for order in sorted(stack.exchange_orders(), key=lambda o: o["received_at"]):
        by_account[order["account_id"]].append(order["sequence"])
    for account_id, sequences in by_account.items():
        assert sequences == sorted(sequences), (account_id, sequences)


def leaders() -> dict[int, str]:
    return dict(ShardLease.objects.values_list("shard", "holder"))


def holds_every_shard(name: str) -> bool:
    return sum(1 for holder in leaders().values() if holder == name) == settings.SHARD_COUNT


def start_leader_and_standby(stack: Stack, leader: str, standby: str) -> None:
    """`leader` takes every shard before `standby` starts, so who leads is known."""
    stack.start_worker(leader)
    wait_for(lambda: holds_every_shard(leader), timeout=20, what=f"{leader} to take all shards")
    stack.start_worker(standby)


def place_many(stack: Stack, customers, per_customer: int, **body) -> list[requests.Response]:
    """Each customer places `per_customer` trades one after another; customers in parallel."""

    def run(customer):
        with requests.Session() as session:
            return [
                stack.place(
                    session,
                    customer.token,
                    **{"ticker": "AAPL", "side": "buy", "quantity": 1, **body},
                )
                for _ in range(per_customer)
            ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return [r for batch in pool.map(run, customers) for r in batch]


def test_every_trade_reaches_a_terminal_state_in_customer_order(stack):
    stack.start_exchange("--fill-delay-ms", "1,10", "--reject-rate", "0.05")
    stack.start_web()
    stack.start_worker("w1", "1/2")
    stack.start_worker("w2", "2/2")
    stack.start_reaper()
    customers = [create_customer(cash="100000.00", positions={"AAPL": 50}) for _ in range(20)]

    responses = place_many(stack, customers, per_customer=10)
    responses += place_many(stack, customers[:5], per_customer=2, side="sell", quantity=10)

    assert {r.status_code for r in responses} == {201}
    wait_until_all_terminal()
    statuses = set(Trade.objects.values_list("status", flat=True))
    assert statuses <= {"filled", "rejected"} and "filled" in statuses
    assert_audit_passes()
    assert_exchange_saw_customer_order(stack)


def test_fills_settle_through_the_callback_receiver_which_serves_nothing_else(tmp_path):
    stack = Stack(
        tmp_path,
        database_url=database_url(),
        shard_count=settings.SHARD_COUNT,
        separate_callbacks=True,
    )
    try:
        stack.start_exchange("--fill-delay-ms", "1,5")
        stack.start_web()
        stack.start_callbacks()
        stack.start_worker("w1")
        customers = [create_customer(cash="100000.00") for _ in range(3)]

        place_many(stack, customers, per_customer=2)

        wait_until_all_terminal()
        assert Trade.objects.filter(status="filled").count() == 6
        assert stack.exchange_stats()["callbacks_delivered"] >= 6
        receiver = f"http://127.0.0.1:{stack.callbacks_port}"
        for hidden in ("/api/v1/trades/", "/admin/", "/api/docs/"):
            assert requests.get(receiver + hidden, timeout=5).status_code == 404, hidden
        assert_audit_passes()
    finally:
        stack.stop_all()


def test_short_customers_are_rejected_with_their_reason(stack):
    stack.start_exchange("--fill-delay-ms", "1,5")
    stack.start_web()
    stack.start_worker("w1")
    poor = create_customer(cash="1.00", positions={})
    with requests.Session() as session:
        buy = stack.place(session, poor.token, ticker="AAPL", side="buy", quantity=1).json()
        sell = stack.place(session, poor.token, ticker="AAPL", side="sell", quantity=1).json()

    wait_until_all_terminal(timeout=30)
    assert Trade.objects.get(id=buy["id"]).reason == INSUFFICIENT_FUNDS
    assert Trade.objects.get(id=sell["id"]).reason == INSUFFICIENT_SHARES
    assert stack.exchange_stats()["orders_received"] == 0
    assert_audit_passes()


def test_duplicate_late_reordered_and_lost_callbacks_settle_exactly_once(stack):
    stack.start_exchange(
        "--fill-delay-ms",
        "1,5",
        "--duplicate-rate",
        "1.0",
        "--reorder-rate",
        "0.5",
        "--callback-delay-ms",
        "30",
        "--lose-first-rate",
        "0.3",
    )
    stack.start_web()
    stack.start_worker("w1")
    customers = [create_customer(cash="100000.00") for _ in range(10)]

    place_many(stack, customers, per_customer=5)

    wait_until_all_terminal()
    wait_for(
        lambda: stack.exchange_stats()["callbacks_delivered"] >= 100,
        timeout=30,
        what="the duplicate deliveries to arrive too",
    )
    assert_audit_passes()
    assert_exchange_saw_customer_order(stack)


def test_a_standby_takes_over_when_the_leader_is_killed(stack):
    stack.start_exchange("--fill-delay-ms", "5,20")
    stack.start_web()
    start_leader_and_standby(stack, "leader", "standby")
    # Trades committed in flight whose submission died with the leader are the reaper's.
    stack.start_reaper()
    customers = [create_customer(cash="100000.00") for _ in range(20)]

    with ThreadPoolExecutor(max_workers=1) as background:
        placing = background.submit(place_many, stack, customers, 10)
        wait_for(
            lambda: Trade.objects.filter(status="filled").count() >= 20,
            timeout=30,
            what="some trades to fill",
        )
        killed_at = time.monotonic()
        stack.kill("leader")
        wait_for(
            lambda: holds_every_shard("standby"), timeout=15, what="the standby to take every shard"
        )
        takeover = time.monotonic() - killed_at
        placing.result()

    print(f"takeover after SIGKILL: {takeover:.2f}s")
    wait_until_all_terminal()
    assert_audit_passes()
    assert_exchange_saw_customer_order(stack)


def test_the_standby_sends_the_orders_its_dead_leader_left_unsent(stack):
    """A leader that dies between committing a trade in flight and sending it (here its
    submission failed, then it was killed) leaves that order to the standby, which sends
    it on taking over; no reaper runs, and its deadline is far off."""
    stack.start_exchange("--fill-delay-ms", "1,5")
    stack.start_web()
    far_off = {"REAPER_IN_FLIGHT_DEADLINE": "60"}
    stack.start_worker("leader", **far_off)
    wait_for(lambda: holds_every_shard("leader"), timeout=20, what="leader to take all shards")
    stack.start_worker("standby", **far_off)
    stack.set_faults(outage=True)
    customer = create_customer(cash="100000.00")

    with requests.Session() as session:
        trade = stack.place(session, customer.token, ticker="AAPL", side="buy", quantity=1).json()
    wait_for(
        lambda: "event=submit_failed" in stack.log("leader"),
        timeout=30,
        what="the submission to fail",
    )
    stack.set_faults(outage=False)
    stack.kill("leader")

    wait_until_all_terminal(timeout=30)
    assert Trade.objects.get(id=trade["id"]).status == "filled"
    assert "event=inherited_orders_resent" in stack.log("standby")
    assert_audit_passes()


def test_a_leader_whose_lock_session_is_terminated_is_replaced(stack):
    stack.start_exchange("--fill-delay-ms", "5,20")
    stack.start_web()
    start_leader_and_standby(stack, "first", "second")
    customers = [create_customer(cash="100000.00") for _ in range(10)]
    place_many(stack, customers, per_customer=3)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'leader first'"
        )
        assert cursor.fetchall() == [(True,)]
    wait_for(
        lambda: "second" in set(leaders().values()),
        timeout=15,
        what="the second worker to take over shards",
    )
    place_many(stack, customers, per_customer=3)

    wait_until_all_terminal()
    assert_audit_passes()
    assert_exchange_saw_customer_order(stack)
    assert "event=lock_session_lost" in stack.log("first")


def test_the_reaper_settles_a_trade_whose_callback_never_comes(stack):
    stack.start_exchange("--fill-delay-ms", "1,5", "--no-callback-rate", "1.0")
    stack.start_web()
    stack.start_worker("w1")
    stack.start_reaper()
    customers = [create_customer(cash="100000.00") for _ in range(3)]

    place_many(stack, customers, per_customer=2)

    wait_until_all_terminal(timeout=60)
    assert stack.exchange_stats()["callbacks_delivered"] == 0
    assert "event=reaper_settled" in stack.log("reaper")
    assert_audit_passes()


def test_the_reaper_resends_a_trade_the_exchange_never_got(stack):
    stack.start_exchange("--fill-delay-ms", "1,5")
    stack.start_web()
    stack.start_worker("w1")
    stack.set_faults(outage=True)
    customer = create_customer(cash="100000.00")

    with requests.Session() as session:
        trade = stack.place(session, customer.token, ticker="AAPL", side="buy", quantity=1).json()
    wait_for(
        lambda: "event=submit_failed" in stack.log("w1"), timeout=30, what="the submission to fail"
    )
    assert Trade.objects.get(id=trade["id"]).status == "in_progress"
    stack.set_faults(outage=False)
    stack.start_reaper()

    wait_until_all_terminal(timeout=60)
    assert Trade.objects.get(id=trade["id"]).status == "filled"
    assert "event=reaper_resubmitted" in stack.log("reaper")
    assert_audit_passes()


def test_sigterm_gives_the_shards_back_at_once(stack):
    start_leader_and_standby(stack, "polite", "next")

    stack.signal("polite", signal.SIGTERM)
    assert stack.procs["polite"].wait(timeout=15) == 0

    wait_for(lambda: holds_every_shard("next"), timeout=10, what="the next worker to lead")


def test_a_frozen_leader_is_deposed_and_fenced_when_it_wakes(stack):
    stack.env["WORKER_LEASE_TIMEOUT"] = "1.5"
    stack.start_exchange("--fill-delay-ms", "5,20")
    stack.start_web()
    start_leader_and_standby(stack, "frozen", "standby")
    stack.start_reaper()
    customers = [create_customer(cash="100000.00") for _ in range(10)]
    place_many(stack, customers, per_customer=2)

    stack.signal("frozen", signal.SIGSTOP)
    place_many(stack, customers, per_customer=2)
    wait_for(
        lambda: holds_every_shard("standby"),
        timeout=20,
        what="the standby to depose the frozen leader",
    )
    wait_until_all_terminal()
    stack.signal("frozen", signal.SIGCONT)
    wait_for(
        lambda: "event=lock_session_lost" in stack.log("frozen"),
        timeout=15,
        what="the woken leader to notice it was deposed",
    )
    place_many(stack, customers, per_customer=2)

    wait_until_all_terminal()
    assert holds_every_shard("standby")
    assert "event=frozen_leader_deposed" in stack.log("standby")
    assert_audit_passes()
    assert_exchange_saw_customer_order(stack)


def start_two_reapers_and_no_callbacks(stack: Stack, active: str) -> None:
    """No callbacks at all, so that only a reaper settles trades; reaper `active` holds
    the reaper lock before reaper "standby" starts."""
    stack.env["REAPER_LEASE_TIMEOUT"] = "1.5"
    stack.start_exchange("--fill-delay-ms", "1,5", "--no-callback-rate", "1.0")
    stack.start_web()
    stack.start_worker("w1")
    stack.start_reaper(name=active)
    wait_for(
        lambda: "event=lock_taken" in stack.log(active),
        timeout=20,
        what="the first reaper to become active",
    )
    stack.start_reaper(name="standby")


def test_a_frozen_reaper_is_replaced_by_the_standby(stack):
    start_two_reapers_and_no_callbacks(stack, active="frozen")
    stack.signal("frozen", signal.SIGSTOP)
    customers = [create_customer(cash="100000.00") for _ in range(3)]

    place_many(stack, customers, per_customer=2)

    wait_until_all_terminal(timeout=60)
    assert "event=frozen_leader_deposed" in stack.log("standby")
    assert "event=reaper_settled" in stack.log("standby")
    stack.signal("frozen", signal.SIGCONT)
    wait_for(
        lambda: "event=lock_session_lost" in stack.log("frozen"),
        timeout=15,
        what="the woken reaper to notice it was deposed",
    )
    assert_audit_passes()


def test_a_reaper_whose_pass_outlasts_the_lease_timeout_is_not_deposed(stack):
    stack.env["EXCHANGE_READ_TIMEOUT"] = "5"
    start_two_reapers_and_no_callbacks(stack, active="busy")
    customers = [create_customer(cash="100000.00") for _ in range(3)]

    place_many(stack, customers, per_customer=1)
    wait_for(lambda: stack.exchange_stats()["orders_received"] == 3, timeout=30, what="the orders")
    # From now on every answer of the exchange takes 2 s and no callback comes: the
    # reaper's pass looks the trades up one after another, for longer than the timeout.
    stack.set_faults(slow_ms=2000)

    wait_until_all_terminal(timeout=90)
    assert stack.log("busy").count("event=reaper_settled") == 3
    assert "event=frozen_leader_deposed" not in stack.log("standby")
    assert_audit_passes()
