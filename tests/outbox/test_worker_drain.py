import threading
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import DataError, OperationalError, connection
from django.utils import timezone

from balances.models import Account
from devtools.stack import wait_for
from outbox import worker as worker_module
from outbox.leadership import SHARD_LOCK_NAMESPACE
from outbox.models import OutboxMessage, ShardLease
from outbox.worker import ShardWorker
from tests.outbox.test_quote_book import FakeExchange, SlowExchange
from trades.exchange_client import (
    ExchangeError,
    ExchangeRejectedRequest,
    ExchangeUnavailable,
    OrderRequest,
    OrderState,
)
from trades.execution import QuoteNeeded, trade_send_next
from trades.models import Trade
from trades.services import trade_place


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


def place_in_shard(customer_id: int, ticker: str, shard: int = 3) -> Trade:
    """A placed trade of a customer moved into `shard` (the `worker` leads shard 3)."""
    trade = trade_place(customer_id=customer_id, ticker=ticker, side="buy", quantity=1).trade
    Account.objects.filter(customer_id=customer_id).update(shard=shard)
    OutboxMessage.objects.filter(customer_id=customer_id).update(shard=shard)
    ShardLease.objects.update_or_create(shard=shard, defaults={"epoch": 1})
    return trade


@pytest.fixture
def submitted(worker, monkeypatch):
    """The orders the worker hands to its submit threads (not sent anywhere)."""
    orders = []
    monkeypatch.setattr(worker._submitters, "submit", lambda _, order: orders.append(order))
    return orders


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(worker_module.time, "monotonic", lambda: now[0])
    return now


@pytest.mark.django_db
@pytest.mark.parametrize("max_age", [1.0, 0.0], ids=["slower-than-max-age", "max-age-zero"])
def test_a_quote_answer_is_used_however_long_it_took(
    worker, submitted, clock, make_customer, max_age
):
    customer = make_customer()
    trade = place_in_shard(customer.id, "AAPL")
    worker.quotes.max_age = max_age
    worker.quotes.client = SlowExchange(clock, seconds=1.1)

    worker._drain(3)

    assert [order.client_order_id for order in submitted] == [str(trade.id)]
    assert Trade.objects.get(id=trade.id).status == "in_progress"


class RefusesTicker(FakeExchange):
    def __init__(self, bad):
        super().__init__()
        self.bad = bad

    def quotes(self, tickers):
        if self.bad in tickers:
            self.asked.append(list(tickers))
            raise ExchangeError("malformed quote from exchange")
        return super().quotes(tickers)


@pytest.mark.django_db
def test_a_ticker_the_exchange_will_not_quote_holds_up_only_its_customer(
    worker, submitted, make_customer
):
    stuck, other = make_customer(), make_customer()
    stuck_trade = place_in_shard(stuck.id, "AAPL")
    other_trade = place_in_shard(other.id, "MSFT")
    worker.quotes.client = RefusesTicker("AAPL")

    worker._drain(3)

    assert [order.client_order_id for order in submitted] == [str(other_trade.id)]
    assert Trade.objects.get(id=stuck_trade.id).status == "placed"
    assert stuck.id in worker._set_aside
    assert 3 not in worker._backoff_until  # the shard itself goes on


@pytest.mark.django_db
def test_customers_set_aside_never_fill_the_batch_and_an_unquotable_ticker_is_asked_once(
    worker, submitted, make_customer
):
    worker.batch_size = 2
    stuck = [place_in_shard(make_customer().id, "AAPL") for _ in range(3)]
    behind = place_in_shard(make_customer().id, "MSFT")
    exchange = worker.quotes.client = RefusesTicker("AAPL")

    while worker._drain(3):  # a batch at a time, as the run loop's turns do
        pass

    assert [order.client_order_id for order in submitted] == [str(behind.id)]
    assert {t.customer_id for t in stuck} <= worker._set_aside.keys()
    assert exchange.asked.count(["AAPL"]) == 1


@pytest.mark.django_db
def test_a_customer_the_worker_cannot_handle_at_all_is_set_aside_not_the_worker(
    worker, submitted, make_customer
):
    OutboxMessage.objects.create(shard=3, customer_id=987654321)  # no such account
    customer = make_customer()
    trade = place_in_shard(customer.id, "AAPL")
    worker.quotes.client = FakeExchange()

    worker._drain(3)

    assert [order.client_order_id for order in submitted] == [str(trade.id)]
    assert 987654321 in worker._set_aside


def shard_lock_held(shard: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = %s AND objsubid = 2",
            [SHARD_LOCK_NAMESPACE, shard],
        )
        return cursor.fetchone()[0] == 1


@pytest.mark.django_db(transaction=True)
def test_on_sigterm_the_shards_go_back_before_the_orders_being_submitted_finish():
    submitting = threading.Event()
    finish = threading.Event()

    class SlowExchangeClient:
        def submit_order(self, order):
            submitting.set()
            finish.wait(10)
            raise ExchangeUnavailable("still slow")

    worker = ShardWorker(
        shards=[7],
        name="stopping",
        poll_interval=1,
        lock_retry_interval=1,
        quote_max_age=1,
        make_exchange_client=SlowExchangeClient,
    )
    worker.leadership.maintain()
    assert shard_lock_held(7)
    worker._submitters.submit(worker._submit, ORDER)
    wait_for(submitting.is_set, timeout=5, what="the order to be on its way")
    stopping = threading.Thread(target=worker._shutdown)
    stopping.start()
    try:
        wait_for(lambda: not shard_lock_held(7), timeout=5, what="the shard to be released")
        assert stopping.is_alive()  # the submission is still going on
    finally:
        finish.set()
        stopping.join(10)


@pytest.mark.django_db
def test_the_quotes_a_batch_needs_are_asked_for_in_one_request_before_any_transaction(
    worker, monkeypatch, make_customer
):
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


@pytest.mark.django_db
def test_a_busy_shard_gets_a_batch_a_turn_so_it_never_holds_up_the_others(
    worker, submitted, make_customer
):
    worker.batch_size = 2
    worker.leadership.held = {3: 1, 5: 1}
    worker.quotes.client = FakeExchange()
    busy = [place_in_shard(make_customer().id, "AAPL", shard=3) for _ in range(5)]
    other = place_in_shard(make_customer().id, "AAPL", shard=5)

    # The run loop's turns: every shard with work gets one batch, full ones come back.
    assert worker._drain(3) is True
    assert worker._drain(5) is False
    assert worker._drain(3) is True
    assert worker._drain(3) is False

    sent = [int(order.client_order_id) for order in submitted]
    assert sorted(sent) == sorted([t.id for t in busy] + [other.id])
    assert sent.index(other.id) == 2  # after one batch of the busy shard, not all of it


@pytest.mark.django_db
def test_a_leader_renews_its_heartbeat_between_slow_tries_for_one_customer(
    worker, clock, monkeypatch
):
    """Each try for a customer may wait on a slow quote: a leader that did not renew its
    heartbeat in between would be taken for a frozen one and deposed."""
    OutboxMessage.objects.create(shard=3, customer_id=1001)
    worker._next_locks = clock[0]  # due now, then every lock_retry_interval (1 s)
    renewals = []
    monkeypatch.setattr(
        worker.leadership, "maintain", lambda: renewals.append(clock[0]) or ([], [])
    )
    tries = []

    def send_next(*, shard, epoch, customer_id, quotes):
        tries.append(clock[0])
        if len(tries) < 3:
            raise QuoteNeeded("AAPL")

    monkeypatch.setattr(worker_module, "trade_send_next", send_next)
    worker.quotes.client = SlowExchange(clock, seconds=1.1)

    worker._drain(3)

    assert len(tries) == 3
    assert renewals == [1000.0, 1001.1, 1002.2]


@pytest.mark.django_db
def test_a_leader_that_lost_the_shard_between_tries_stops(worker, clock, monkeypatch):
    OutboxMessage.objects.create(shard=3, customer_id=1001)
    worker._next_locks = clock[0] + 1  # due after the first slow quote

    def lose_the_shard():
        worker.leadership.held.clear()
        return [], [3]

    monkeypatch.setattr(worker.leadership, "maintain", lose_the_shard)
    tries = []

    def send_next(*, shard, epoch, customer_id, quotes):
        tries.append(epoch)
        raise QuoteNeeded("AAPL")

    monkeypatch.setattr(worker_module, "trade_send_next", send_next)
    worker.quotes.client = SlowExchange(clock, seconds=1.1)

    assert worker._drain(3) is False
    assert tries == [1]  # no second try with an epoch it knows is gone


@pytest.mark.django_db
def test_orders_in_flight_in_a_shard_taken_over_are_sent_again(
    worker, submitted, make_customer, monkeypatch
):
    """The last leader may have died between committing a trade in flight and sending it:
    the new one sends it again at once (the exchange dedupes by trade id) instead of
    leaving the customer to the reaper's deadline."""
    inherited, elsewhere, waiting, old = (make_customer() for _ in range(4))
    in_flight = place_in_shard(inherited.id, "AAPL")
    sent = trade_send_next(shard=3, epoch=1, customer_id=inherited.id, quotes={"AAPL": 100})
    place_in_shard(elsewhere.id, "AAPL", shard=4)
    trade_send_next(shard=4, epoch=1, customer_id=elsewhere.id, quotes={"AAPL": 100})
    place_in_shard(waiting.id, "MSFT")  # placed, not in flight: the drain sends it
    # In flight for longer than the reaper's deadline: the reaper's to look up.
    reapers = place_in_shard(old.id, "AAPL")
    trade_send_next(shard=3, epoch=1, customer_id=old.id, quotes={"AAPL": 100})
    Trade.objects.filter(id=reapers.id).update(submitted_at=timezone.now() - timedelta(minutes=1))
    monkeypatch.setattr(worker.leadership, "maintain", lambda: ([3], []))
    worker._next_locks = 0.0

    worker._maintain_leadership_if_due()

    assert submitted == [sent] and sent.client_order_id == str(in_flight.id)
    assert worker._due == {3}


def django_error(cause: Exception) -> OperationalError:
    """As Django raises a driver's error: wrapped, with the driver's error as the cause."""
    try:
        raise OperationalError(str(cause)) from cause
    except OperationalError as exc:
        return exc


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("cause", "set_aside"),
    [
        (psycopg.OperationalError("consuming input failed: server closed the connection"), False),
        (
            psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
            False,
        ),
        (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), True),
    ],
    ids=["server-gone", "admin-shutdown", "lock-timeout"],
)
def test_a_failed_session_is_retried_not_blamed_on_the_customer(
    worker, monkeypatch, cause, set_aside
):
    """A Postgres restart can fail a statement before the driver has marked its connection
    bad: that is the session's failure, so the customer must not wait out a set-aside."""
    OutboxMessage.objects.create(shard=3, customer_id=1001)

    def send_next(*, shard, epoch, customer_id, quotes):
        raise django_error(cause)

    monkeypatch.setattr(worker_module, "trade_send_next", send_next)

    assert worker._drain(3) is False
    assert (1001 in worker._set_aside) is set_aside
