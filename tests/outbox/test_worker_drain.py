from decimal import Decimal

import pytest
from django.db import DataError

from outbox import worker as worker_module
from outbox.models import OutboxMessage
from outbox.worker import ShardWorker
from trades.exchange_client import (
    ExchangeRejectedRequest,
    ExchangeUnavailable,
    OrderRequest,
    OrderState,
)


@pytest.fixture
def worker():
    worker = ShardWorker(
        shards=[3], name="test", poll_interval=1, lock_retry_interval=1, quote_max_age=1
    )
    worker.leadership.held = {3: 1}  # as if it led shard 3 with epoch 1
    worker._next_locks = float("inf")  # and no lock checks during the test
    yield worker
    worker._submitters.shutdown()


@pytest.mark.django_db
def test_a_customer_whose_work_fails_is_set_aside_and_the_rest_of_the_shard_goes_on(
    worker, monkeypatch
):
    OutboxMessage.objects.create(shard=3, customer_id=1001)
    OutboxMessage.objects.create(shard=3, customer_id=1002)
    calls = []

    def send_next(*, shard, epoch, customer_id, quotes):
        calls.append(customer_id)
        if customer_id == 1001:
            raise DataError("a poisoned customer")
        OutboxMessage.objects.filter(customer_id=customer_id).delete()

    monkeypatch.setattr(worker_module, "trade_send_next", send_next)

    worker._drain(3)
    assert calls == [1001, 1002]
    assert 1001 in worker._set_aside

    worker._drain(3)  # the poisoned customer waits out its time; nothing else to do
    assert calls == [1001, 1002]


@pytest.mark.django_db
def test_the_quotes_a_batch_needs_are_asked_for_in_one_request_before_any_transaction(
    worker, monkeypatch, make_customer
):
    from tests.outbox.test_quote_book import FakeExchange
    from trades.services import trade_place

    first, second = make_customer(), make_customer()
    for customer, ticker in ((first, "AAPL"), (second, "MSFT")):
        trade_place(customer_id=customer.id, ticker=ticker, side="buy", quantity=1)
        OutboxMessage.objects.filter(customer_id=customer.id).update(shard=3)
    exchange = FakeExchange()
    worker.quotes.client = exchange
    quoted_at_send = []

    def send_next(*, shard, epoch, customer_id, quotes):
        quoted_at_send.append(sorted(quotes))
        OutboxMessage.objects.filter(customer_id=customer_id).delete()

    monkeypatch.setattr(worker_module, "trade_send_next", send_next)

    worker._drain(3)

    assert exchange.asked == [["AAPL", "MSFT"]]
    assert quoted_at_send == [["AAPL", "MSFT"], ["AAPL", "MSFT"]]


class RefusingExchange:
    """Answers every submission with a 400; `recorded` is what GET /orders says."""

    def __init__(self, recorded):
        self.recorded = recorded

    def submit_order(self, order):
        raise ExchangeRejectedRequest("invalid_order", "bad price")

    def get_order(self, client_order_id):
        if isinstance(self.recorded, Exception):
            raise self.recorded
        return self.recorded


ORDER = OrderRequest(
    client_order_id="77",
    account_id="5",
    sequence=1,
    ticker="AAPL",
    side="buy",
    quantity=1,
    max_price=Decimal("105.0000"),
    min_price=None,
    callback_url="http://127.0.0.1:1/exchange/callback/",
)
KNOWN = OrderState(
    client_order_id="77",
    exchange_order_id="X-77",
    status="open",
    ticker="AAPL",
    side="buy",
    quantity=1,
    fill_price=None,
    executed_at=None,
    reason=None,
)


@pytest.mark.parametrize(
    ("recorded", "booked"),
    [(None, True), (KNOWN, False), (ExchangeUnavailable("down"), False)],
    ids=["never-recorded", "recorded-after-all", "cannot-tell"],
)
def test_a_refused_order_is_booked_rejected_only_if_the_exchange_never_recorded_it(
    worker, recorded, booked
):
    worker._local.client = RefusingExchange(recorded)

    worker._submit(ORDER)

    assert (not worker._refused.empty()) is booked
    if booked:
        order, reason = worker._refused.get_nowait()
        assert order == ORDER and reason == "refused by exchange: bad price"
