import time

import pytest
from django.db import transaction

from outbox.connections import dedicated_connection
from outbox.notify import CUSTOMER_EVENTS_CHANNEL, customers_of_notification, shard_waker
from outbox.sharding import channel_for_shard, shard_for_customer
from trades.services import trade_place

pytestmark = pytest.mark.django_db(transaction=True)


def _drain(conn):
    """Notifications already delivered: a round trip first, so anything sent has arrived."""
    conn.execute("SELECT 1")
    return [n.channel for n in conn.notifies(timeout=0)]


def wait_for_notification(conn, channel, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for note in conn.notifies(timeout=deadline - time.monotonic(), stop_after=1):
            if note.channel == channel:
                return True
    return False


def test_the_shard_is_woken_only_after_commit(customer):
    channel = channel_for_shard(shard_for_customer(customer.id))
    with dedicated_connection("test-listener") as listener:
        listener.execute(f'LISTEN "{channel}"')

        with transaction.atomic():
            trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1)
            shard_waker().flush()
            assert _drain(listener) == []

        assert wait_for_notification(listener, channel)


def test_a_rolled_back_placement_wakes_nobody(customer):
    channel = channel_for_shard(shard_for_customer(customer.id))
    with dedicated_connection("test-listener") as listener:
        listener.execute(f'LISTEN "{channel}"')
        with pytest.raises(RuntimeError), transaction.atomic():
            trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1)
            raise RuntimeError("rollback")
        shard_waker().flush()
        assert _drain(listener) == []


def test_a_customers_new_events_wake_the_stream_servers_after_commit(customer):
    with dedicated_connection("test-listener") as listener:
        listener.execute(f'LISTEN "{CUSTOMER_EVENTS_CHANNEL}"')
        with transaction.atomic():
            trade_place(customer_id=customer.id, ticker="AAPL", side="buy", quantity=1)
            shard_waker().flush()
            assert _drain(listener) == []
        shard_waker().flush()

        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
        assert [customers_of_notification(p) for p in payloads] == [[customer.id]]
