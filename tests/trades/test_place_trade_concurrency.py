"""Placement under real concurrency: real threads, each with its own database connection."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import DatabaseError, connection, connections

from outbox.models import OutboxMessage
from trades.models import Trade
from trades.services import trade_place

pytestmark = pytest.mark.django_db(transaction=True)


def run_concurrently(count, fn):
    """Run fn(i) on `count` threads released at the same moment; returns results in order."""
    barrier = threading.Barrier(count)

    def task(i):
        try:
            barrier.wait(timeout=10)
            return fn(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))


def test_concurrent_retries_with_one_client_order_id_make_one_trade(customer):
    results = run_concurrently(
        12,
        lambda i: trade_place(
            customer_id=customer.id,
            ticker="AAPL",
            side="buy",
            quantity=3,
            client_order_id="retry-me",
        ),
    )

    assert Trade.objects.filter(customer_id=customer.id).count() == 1
    assert OutboxMessage.objects.count() == 1
    assert {r.trade.id for r in results} == {Trade.objects.get().id}
    assert sum(r.created for r in results) == 1


def test_concurrent_retries_through_the_api_make_one_trade(customer):
    def post(i):
        return (
            customer.client()
            .post(
                "/api/v1/trades/",
                {"ticker": "AAPL", "side": "buy", "quantity": 3, "client_order_id": "api-retry"},
                format="json",
            )
            .status_code
        )

    statuses = run_concurrently(8, post)

    assert sorted(statuses) == [200] * 7 + [201]
    assert Trade.objects.count() == 1


def test_sequence_numbers_are_gapless_and_in_commit_order(customer):
    per_thread = 15
    run_concurrently(
        8,
        lambda i: [
            trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1)
            for _ in range(per_thread)
        ],
    )

    with connection.cursor() as cursor:
        cursor.execute("SHOW track_commit_timestamp")
        tracked = cursor.fetchone()[0] == "on"
        cursor.execute(
            "SELECT seq, id, pg_xact_commit_timestamp(xmin) FROM trades_trade "
            "WHERE customer_id = %s ORDER BY seq"
            if tracked
            else "SELECT seq, id, NULL FROM trades_trade WHERE customer_id = %s ORDER BY seq",
            [customer.id],
        )
        rows = cursor.fetchall()
    assert [seq for seq, _, _ in rows] == list(range(1, 8 * per_thread + 1))
    ids = [trade_id for _, trade_id, _ in rows]
    assert ids == sorted(ids)
    if tracked:
        commits = [committed for _, _, committed in rows]
        assert commits == sorted(commits)


def test_trade_and_outbox_row_commit_together_or_not_at_all(customer):
    # The outbox insert fails after the trade insert (and the sequence number) succeeded.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION fail_outbox() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'outbox insert failed'; END $$; "
            "CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox_outboxmessage "
            "FOR EACH ROW EXECUTE FUNCTION fail_outbox()"
        )
    try:
        with pytest.raises(DatabaseError, match="outbox insert failed"):
            trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER fail_outbox ON outbox_outboxmessage; DROP FUNCTION fail_outbox()"
            )

    assert not Trade.objects.exists()
    assert not OutboxMessage.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_trade_seq FROM balances_account WHERE customer_id=%s", [customer.id]
        )
        assert cursor.fetchone()[0] == 0
